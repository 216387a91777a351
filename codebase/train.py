"""The one training loop shared by ``run_gan.py`` and ``run_conditional_gan.py`` (their command line:
codebase/cli.py; the run's settings: codebase/config.py; what it writes: codebase/outputs.py).

The loop trains with the handout's functions in ``codebase/gan.py`` (``loss_nonsaturating``,
``conditional_loss_nonsaturating``, ``loss_wasserstein_gp``, ``loss_minimax``), looked up when the run starts, so
a student's own code is what trains. Each step alternates, as the handout does:
(1) call the loss and step D on d_loss's gradient w.r.t. D's parameters only;
(2) call the loss again, with fresh noise, and step G on g_loss's gradient w.r.t. G's parameters only.
Taking each gradient w.r.t. one network's parameters means a d_loss with or without ``x_fake.detach()`` trains
alike, and g_loss never moves D. The loop also owns logging (tqdm, ``losses.csv``, ``losses.png``), the 10x10
sample grids from fixed noise, and checkpoints (``codebase/checkpoint.py``). Ctrl-C finishes the current step,
saves a checkpoint and exits; ``--resume`` continues to the same final weights as an uninterrupted run.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import signal
import traceback
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from codebase import diagnostics, gan
from codebase.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from codebase.config import (ADAM_BETAS, GRID_EVERY, HANDOUT, Config, TrainingError, amp_dtype, build_models,
                             pick_device)
from codebase.data import load_fashion_mnist, to_unit_range
from codebase.outputs import (VIEW, check_writable, class_ordered_reals, clear_outputs, open_log, plot_losses,
                              save_grid_image)



class _StopRequest:
    """First Ctrl-C (or SIGTERM) asks the loop to stop after the current step; a second one stops at once."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C raises KeyboardInterrupt

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)


# ---- The loop --------------------------------------------------------------------------------------------------

LossFn = Callable[..., "tuple[torch.Tensor, torch.Tensor]"]


def loss_function(cfg: Config) -> tuple[str, LossFn]:
    """(name, function) of the handout function in codebase/gan.py that trains this config."""
    name = "conditional_loss_nonsaturating" if cfg.conditional else f"loss_{cfg.loss_type}"
    return name, getattr(gan, name)


def _grads(loss: torch.Tensor, net: nn.Module, what: str, rerun: Callable | None = None, retain: bool = False
           ) -> list[torch.Tensor]:
    """Gradient of one loss w.r.t. one network's parameters only (zeros where the loss does not reach them). When
    autograd fails, ``rerun()`` (the loss call again) is traced to name the lines of gan.py behind the error."""
    params = [p for p in net.parameters() if p.requires_grad]
    net_name = "D" if what == "d_loss" else "G"
    if isinstance(loss, (float, int)):
        raise TrainingError(f"codebase/gan.py: {what} is a Python number: return a tensor, not .item() (training needs "
                            "its gradient). Check it with: python -m pytest tests/test_losses.py")
    unrelated = TrainingError(f"codebase/gan.py: {what} (the {'first' if what == 'd_loss' else 'second'} value the "
                              f"function returns) does not depend on {net_name}'s parameters: the handout's functions "
                              f"return (d_loss, g_loss) in that order, and {what} must depend on {net_name}. Check it "
                              "with: python -m pytest tests/test_losses.py")
    if isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.is_floating_point() and not loss.requires_grad \
            and any(p.requires_grad for p in net.parameters()):
        raise unrelated
    if not (isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.requires_grad):
        raise TrainingError(f"codebase/gan.py: {what} must be a scalar tensor that depends on the network's "
                            f"parameters, got {_describe(loss)}. Check it with: python -m pytest tests/test_losses.py")
    try:
        grads = torch.autograd.grad(loss.reshape(()), params, retain_graph=retain, allow_unused=True)
    except RuntimeError as error:
        sentence = diagnostics.where_in_gan(rerun, error) if rerun is not None else None
        if sentence is None:
            raise
        raise TrainingError(f"codebase/gan.py: the gradient of {what} failed ({diagnostics.first_sentence(error)}). "
                            f"{sentence}.") from None
    if all(grad is None for grad in grads):
        raise unrelated
    return [torch.zeros_like(p) if grad is None else grad for p, grad in zip(params, grads)]


def _step(opt: torch.optim.Optimizer, net: nn.Module, grads: list[torch.Tensor]) -> None:
    for p, grad in zip([p for p in net.parameters() if p.requires_grad], grads):
        p.grad = grad
    opt.step()


def update(loss_fn: LossFn, args: tuple, g: nn.Module, d: nn.Module, g_opt: torch.optim.Optimizer,
           d_opt: torch.optim.Optimizer, device: torch.device,
           amp: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step, alternating as the handout does; returns the d_loss and g_loss it stepped on.

    With ``amp`` (a dtype), the loss runs under autocast: convolutions and matmuls in that dtype, the rest in fp32.
    """
    def losses():
        with torch.autocast(torch.device(device).type, dtype=amp or torch.float32, enabled=amp is not None):
            returned = loss_fn(*args, device=device)
        if not (isinstance(returned, tuple) and len(returned) == 2):
            raise TrainingError(f"codebase/gan.py: the loss function returned {_describe(returned)}: return (d_loss, "
                                "g_loss), a pair of scalar tensors. Check it with: python -m pytest tests/test_losses.py")
        return returned

    # (1) Update D on d_loss, w.r.t. D's parameters only.
    d_loss, _ = losses()
    _step(d_opt, d, _grads(d_loss, d, "d_loss", losses))
    # (2) Update G on g_loss against the updated D, w.r.t. G's parameters only; D needs no gradient here.
    d.requires_grad_(False)
    try:
        _, g_loss = losses()
    finally:
        d.requires_grad_(True)
    _step(g_opt, g, _grads(g_loss, g, "g_loss", losses))
    return d_loss.detach(), g_loss.detach()


@torch.no_grad()
def update_ema(g_ema: nn.Module, g: nn.Module, decay: float, step: int) -> None:
    """g_ema <- d * g_ema + (1 - d) * g for weights and batch-norm statistics, with d = min(decay, (1+t)/(10+t)):
    early on the average forgets fast, so the random initial weights fade within the first few dozen steps."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(g_ema.parameters()), list(g.parameters()), 1 - d)
    for b_ema, b in zip(g_ema.buffers(), g.buffers()):
        if b.is_floating_point():
            b_ema.lerp_(b, 1 - d)
        else:
            b_ema.copy_(b)  # batch norm's step counter


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}" + ("" if value.requires_grad else " with no gradient")
    return f"a {type(value).__name__}"


def _preflight(name: str, loss_fn: LossFn, g: nn.Module, d: nn.Module, x_real: torch.Tensor,
               y: torch.Tensor | None, device: torch.device) -> None:
    """One training step on copies of the networks, leaving their state and the RNG untouched, so that an
    unwritten stub, or a loss that cannot train (swapped, a Python number, a failing gradient), stops the run with
    one line before anything is written. Other errors keep their traceback."""
    devices = [torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            g, d = copy.deepcopy(g), copy.deepcopy(d)
            args = (g, d, x_real) + (() if y is None else (y,))
            update(loss_fn, args, g, d, torch.optim.SGD(g.parameters(), lr=0.0), torch.optim.SGD(d.parameters(), lr=0.0),
                   device)
        except NotImplementedError as error:
            frames = traceback.extract_tb(error.__traceback__)
            if frames and frames[-1].name == name:
                raise TrainingError(f"codebase/gan.py: {name} is not written yet (handout {HANDOUT[name]})") from None
            raise


def _script(saved: dict) -> str:
    """The command that trains a run with this saved config."""
    if saved.get("conditional"):
        return "python run_conditional_gan.py"
    return f"python run_gan.py --loss_type {saved.get('loss_type')}"


def _check_resumable(saved: dict, cfg: Config, ckpt_path: Path) -> None:
    """--resume continues only the run that was saved: same kind of GAN, same settings."""
    if (saved.get("conditional"), saved.get("loss_type")) != (cfg.conditional, cfg.loss_type):
        raise TrainingError(f"{ckpt_path.parent} holds a run of `{_script(saved)}`; resume it with that command "
                            f"plus --resume, or pick another --out_dir for this one.")
    changed = [k for k in ("batch_size", "lr", "dim_z", "seed", "amp", "ema") if saved.get(k) != getattr(cfg, k)]
    if changed:
        raise TrainingError(f"--resume: {', '.join(f'{k}={saved.get(k)!r}' for k in changed)} in {ckpt_path} "
                            f"differ from this command's flags. Resume with the same flags, or pick a new "
                            f"--out_dir.")


def train(cfg: Config) -> dict:
    """Train to ``cfg.num_epochs`` (None: 1 for a new run, the saved target when resuming); returns a summary dict
    (step, total, interrupted, out_dir)."""
    device = pick_device(cfg.device)
    out = Path(cfg.out_dir)
    ckpt_path = out / "checkpoint.pt"
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out_dir {out} is a file, not a folder. Choose another --out_dir.")
    if cfg.batch_size < 2:
        raise TrainingError(f"--batch_size {cfg.batch_size}: the generator's batch norm needs at least 2.")
    check_writable(out)  # before the models and their optimizers (which load torch._dynamo: seconds)
    state = load_checkpoint(ckpt_path) if cfg.resume else None
    if state is not None:
        _check_resumable(state["config"], cfg, ckpt_path)
    elif ckpt_path.exists() and not cfg.overwrite:
        raise TrainingError(f"{out} already holds a run ({ckpt_path}). Pass --resume to continue it, --overwrite to "
                            f"start again, or choose another --out_dir.")
    if cfg.num_epochs is None:
        cfg = dataclasses.replace(cfg, num_epochs=(state["config"].get("num_epochs") or 1) if state else 1)
    images, labels = load_fashion_mnist("train", cfg.data_dir)
    steps_per_epoch = len(images) // cfg.batch_size
    if steps_per_epoch == 0:
        raise TrainingError(f"the training set has {len(images)} images, fewer than --batch_size {cfg.batch_size}.")
    total = steps_per_epoch * cfg.num_epochs
    if state is not None and state["step"] > total:
        done = math.ceil(state["step"] / steps_per_epoch)
        raise TrainingError(f"{out} already holds {state['step']} steps ({done} epochs), more than --num_epochs "
                            f"{cfg.num_epochs} asks for. Leave --num_epochs out to finish the run's own target, "
                            f"or pass a larger one to train further.")

    torch.manual_seed(cfg.seed)
    g, d = build_models(cfg, device)
    g_opt = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=ADAM_BETAS[cfg.loss_type])
    d_opt = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=ADAM_BETAS[cfg.loss_type])
    g_ema = copy.deepcopy(g).requires_grad_(False) if cfg.ema else None  # draws grids and metrics
    amp = amp_dtype(cfg, device)
    name, loss_fn = loss_function(cfg)
    _preflight(name, loss_fn, g, d, to_unit_range(images[:2]).to(device),
               labels[:2].to(device) if cfg.conditional else None, device)
    step = 0
    gan_digest = hashlib.sha256(Path(gan.__file__).read_bytes()).hexdigest()  # the code the losses come from
    if state is not None and state.get("gan_sha256") not in (None, gan_digest) and state["step"] < total:
        print(f"note: codebase/gan.py changed since {out} was trained: its weights so far come from the old code. "
              f"To train with the new code from the start, use --overwrite instead of --resume.")
    if state is not None:
        for module, key in ((g, "g"), (d, "d"), (g_opt, "g_opt"), (d_opt, "d_opt"), (g_ema, "g_ema")):
            if module is not None:
                module.load_state_dict(state[key])
        step = state["step"]
        set_rng_state(state["rng"])
        if step >= total:
            print(f"{out} already holds its {step} steps ({cfg.num_epochs} epochs); pass a larger --num_epochs to "
                  f"train further.")
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.resume:  # a fresh run leaves nothing of an older one behind (grids for make_submission.sh, scores)
        clear_outputs(out)
    elif step < total:  # scores of an earlier, shorter target would look current until this run ends
        clear_outputs(out, ["metrics.json"])
    # The settings, and the step the run ends at: make_submission.sh tells a finished run's grids from an unfinished one's.
    (out / "config.json").write_text(json.dumps({**dataclasses.asdict(cfg), "total_steps": total,
                                                   "gan_sha256": gan_digest}, indent=2) + "\n")

    # Fixed grid noise from its own generator, so grids never disturb the training RNG.
    grid_z = torch.randn(100, cfg.dim_z, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    grid_y = torch.arange(10, device=device).repeat(10) if cfg.conditional else None  # column c shows class c
    reals = class_ordered_reals(images, labels) if cfg.conditional else images[:100]
    log_file, log = open_log(out / "losses.csv", step)

    def checkpoint():
        save_checkpoint(ckpt_path, {"g": g.state_dict(), "d": d.state_dict(), "g_opt": g_opt.state_dict(),
                                    "d_opt": d_opt.state_dict(), "step": step, "rng": rng_state(),
                                    "config": dataclasses.asdict(cfg), "gan_sha256": gan_digest,
                                    **({"g_ema": g_ema.state_dict()} if g_ema is not None else {})})

    def save_grid():
        g_show.eval()
        with torch.no_grad():
            x = g_show(grid_z, grid_y)  # (100, 1, 28, 28)
        g_show.train()
        save_grid_image(x, out / f"fake_{step:04d}.png", out / VIEW)
        nonlocal reals
        if reals is not None:  # once per process, with the first grid (keeps torchvision out of start-up)
            save_grid_image(to_unit_range(reals), out / "real.png")
            reals = None

    g_show = g if g_ema is None else g_ema
    gan_kind = diagnostics.kind(cfg.loss_type, cfg.conditional)
    monitor = diagnostics.Monitor(gan_kind)
    perm_epoch, perm = -1, None
    with _StopRequest() as stop, log_file, tqdm(total=total, initial=step, desc=out.name, unit="step") as bar:
        while step < total and not stop.requested:
            epoch, i = divmod(step, steps_per_epoch)
            if epoch != perm_epoch:  # each epoch's order depends only on (seed, epoch), so resume can rebuild it
                perm_epoch = epoch
                perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch))
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x_real = to_unit_range(images[idx]).to(device)  # (B, 1, 28, 28) in [-1, 1]
            args = (g, d, x_real) + ((labels[idx].to(device),) if cfg.conditional else ())

            d_loss, g_loss = update(loss_fn, args, g, d, g_opt, d_opt, device, amp)
            if g_ema is not None:
                update_ema(g_ema, g, cfg.ema, step)
            check_finite("d_loss", d_loss, step, ckpt_path)
            check_finite("g_loss", g_loss, step, ckpt_path)
            step += 1
            d_val, g_val = d_loss.item(), g_loss.item()
            log.writerow([step, epoch, f"{d_val:.6g}", f"{g_val:.6g}"])
            if warning := monitor.feed(d_val, g_val):
                tqdm.write(f"warning at step {step}: {warning}")
            bar.set_postfix(d_loss=f"{d_val:.3f}", g_loss=f"{g_val:.3f}", refresh=False)
            bar.update()
            if step % GRID_EVERY == 0 or step == total or stop.requested:
                save_grid()
                log_file.flush()
                checkpoint()
    plot_losses(out / "losses.csv", out / "losses.png")
    if cfg.metrics and step >= total:
        from codebase.metrics import write_metrics  # imported here: torchmetrics loads only when needed

        metrics = write_metrics(out, g_show, device, cfg.data_dir)
        defaults = Config(loss_type=cfg.loss_type, conditional=cfg.conditional, num_epochs=1)
        same = all(getattr(cfg, k) == getattr(defaults, k) for k in ("num_epochs", "batch_size", "lr", "dim_z", "ema"))
        if metrics and (sentence := diagnostics.verdict(gan_kind, metrics, same, monitor.warnings)):
            print(f"warning: {sentence}")
    return {"step": step, "total": total, "interrupted": step < total, "out_dir": str(out)}


def check_finite(name: str, value, step: int, ckpt_path: Path) -> None:
    """Stop the run with one message when a loss is not finite, saying what is kept and how to go on."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not torch.isfinite(value):
        kept = (f"The last good checkpoint is kept in {ckpt_path}" if ckpt_path.exists()
                else "No checkpoint was written yet")
        raise TrainingError(f"{name} became {value.item()} at step {step + 1}; training stopped. {kept}. "
                            f"--resume would continue from the same weights and settings: start a new run with a "
                            f"lower --lr (or another --seed) in another --out_dir, or here with --overwrite.")


