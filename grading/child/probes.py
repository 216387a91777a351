"""Probes of the grading suite: fixed networks and inputs on which a gan.py's loss functions are run.

``run(module, problem)`` calls the handout function of one problem (1.2 ``loss_nonsaturating``, 3.2
``conditional_loss_nonsaturating``, 4.5 ``loss_wasserstein_gp``) on the networks below and returns plain data:
both losses, the gradients they send to D and to G, and what the function fed the networks.

The networks make the expected values independent of how a solution draws its random numbers:

* G returns the same images whatever z is, so neither the order of the draws nor the number of G passes
  matters. It records every z (and label) it gets, so the checks can look at their distribution.
* D is a small MLP on the pixels. Conditionally, each image carries its label in a code of ``NUM_CLASSES``
  pixels and D adds ``LABEL_PENALTY`` whenever the label it is given differs from the code, so a loss that pairs
  an image with the wrong class shows it, while fresh fake labels and reused real labels give the same value.
* For 4.5, D records where each input lies on the segment x_fake[i] -> x_real[i] (alpha, and the distance off
  the segment), so the checks can rebuild the interpolates a gradient penalty used, whatever its draw order.

Nothing here knows an expected value (checks.py computes those with trusted code), so this module can run next
to untrusted code: python -m grading grade runs it in a child process through harness.py.
"""
from __future__ import annotations

import importlib.util
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

try:
    from grading.child.problems import FUNCTIONS
except ImportError:  # in the sandbox, where harness.py loads this file and problems.py by path
    from grading_problems import FUNCTIONS

DIM_Z = 64
NUM_CLASSES = 10
BATCH = 16  # batch of the probes whose values and gradients are checked
SAMPLING_BATCH = 64  # batch of the probe that looks at the distributions of z, fake labels and alpha: training's,
# so that correct code that trains on a laptop (a per-sample loop, say) never needs more memory here
EXTREME_SCALE = 1000.0  # D's logits reach several hundred, where log(sigmoid(h)) is -inf in float32
LABEL_PENALTY = 4.0
PROBE_SEED = 0
MAX_CALLS = 40  # calls recorded per network and probe, to bound what a child returns

STEEP_SCALE = 4.0  # 4.5's steep critic: gradient norms of about 2-4 at the interpolates, where the main one has < 1
PROBES = {"1.2": ("main", "extreme", "sampling"), "3.2": ("main", "extreme", "sampling"),
          "4.5": ("main", "steep", "sampling")}
_SEEDS = {"main": 10, "extreme": 20, "sampling": 30, "steep": 40}
SAMPLING_CALLS = 16  # the sampling probe's calls: 1,024 samples in all, and noise, labels and alpha drawn afresh


def load_module(path: str | Path, name: str = "gan_under_test") -> ModuleType:
    """Import a gan.py from its path under ``name`` (kept apart from the project's ``codebase.gan``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up here
    spec.loader.exec_module(module)
    return module


def write_labels(x: Tensor, y: Tensor) -> Tensor:
    """Copy of images x (n, 1, 28, 28) whose first NUM_CLASSES pixels of row 0 code y (n,): +1 at y, -1 elsewhere."""
    if not isinstance(y, Tensor) or y.dtype not in (torch.int32, torch.int64) or y.shape != x.shape[:1]:
        raise TypeError(f"labels must be integer class indices of shape ({x.shape[0]},), got {_kind(y)}")
    code = torch.full((len(y), NUM_CLASSES), -1.0).scatter(1, y.long().view(-1, 1), 1.0)
    x = x.clone()
    x[:, 0, 0, :NUM_CLASSES] = code
    return x


class ProbeGenerator(nn.Module):
    """G(z) = the same images whatever z is (row i of ``fake``, cycling past its end); records each z and y."""

    def __init__(self, fake: Tensor, conditional: bool):
        super().__init__()
        self.dim_z = DIM_Z
        self.num_classes = NUM_CLASSES if conditional else 0
        self.fake = nn.Parameter(fake.clone())  # (n, 1, 28, 28)
        self.calls: list[tuple[Tensor, Tensor | None]] = []
        self.returned: list[tuple[Tensor, int]] = []  # each image batch returned, with its version at the time

    def changed_in_place(self) -> bool:
        """Whether the function changed, in place, images G returned (an operation on x_fake.detach() does)."""
        return any(x._version != version for x, version in self.returned)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if len(self.calls) < MAX_CALLS:
            self.calls.append((z.detach().clone(), None if y is None else y.detach().clone()))
        x = self.fake[torch.arange(z.shape[0]) % len(self.fake)]
        if self.num_classes:
            if y is None:
                raise TypeError("the conditional generator takes labels: g(z, y)")
            x = write_labels(x, y)
        if len(self.returned) < MAX_CALLS:
            self.returned.append((x, x._version))
        return x


class ProbeCritic(nn.Module):
    """h(x) = scale * (w2 . tanh(W1 x + b1) + b2), shape (n,), plus LABEL_PENALTY where y differs from x's code.

    Conditionally, W1 does not see the label code, so h(x, y) with matching labels is independent of the labels.
    Given ``segment = (x_real, x_fake)``, each call records alpha (n,) and the relative distance off the
    segment (n,) of x[i] = alpha[i] x_real[i] + (1 - alpha[i]) x_fake[i].
    """

    def __init__(self, seed: int, conditional: bool, scale: float = 1.0,
                 segment: tuple[Tensor, Tensor] | None = None, width: int = 32):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w1 = nn.Parameter(torch.randn(width, 28 * 28, generator=gen) / 28)
        self.b1 = nn.Parameter(0.1 * torch.randn(width, generator=gen))
        self.w2 = nn.Parameter(torch.randn(width, generator=gen) / width**0.5)
        self.b2 = nn.Parameter(0.1 * torch.randn((), generator=gen))
        self.num_classes = NUM_CLASSES if conditional else 0
        self.scale, self.segment = scale, segment
        self.calls: list[tuple[Tensor, Tensor]] = []
        self._pending: dict[int, tuple[Tensor, Tensor]] = {}
        self.mismatched = 0  # conditional: samples scored under a label other than the one their image carries

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.segment is not None and len(self.calls) < MAX_CALLS:
            self._record(_unwrap(x))
        pixels = x.flatten(1)  # (n, 784)
        if self.num_classes:
            pixels = torch.cat([torch.zeros_like(pixels[:, :NUM_CLASSES]), pixels[:, NUM_CLASSES:]], dim=1)
        h = self.scale * (torch.tanh(pixels @ self.w1.T + self.b1) @ self.w2 + self.b2)  # (n,)
        if not self.num_classes:
            return h
        if y is None:
            raise TypeError("the conditional discriminator takes labels: d(x, y)")
        code = x.flatten(1)[:, :NUM_CLASSES].detach()
        matches = code.gather(1, y.long().view(-1, 1)).squeeze(1) > 0  # (n,)
        try:
            self.mismatched += int((~matches).sum())
        except RuntimeError:  # inside torch.func's transforms a count cannot be read out
            pass
        return h + LABEL_PENALTY * (~matches).to(h.dtype)

    @torch.no_grad()
    def _record(self, x: Tensor) -> None:
        """Record where x's rows lie. A batch of k * n rows is located row by row (row i on segment i mod n); a
        smaller one (a per-sample loop) is matched to its nearest segments and gathered until one point of every
        segment was seen, which is then recorded as one batch."""
        real, fake = self.segment
        n, p = len(real), x.detach().float().reshape(-1, 28 * 28)
        if len(p) % n == 0:
            self.calls.append(_locate(p, torch.arange(len(p)) % n, real, fake))
            return
        r, f = real.flatten(1), fake.flatten(1)
        span = r - f  # (n, 784)
        for row in p:
            guess = len(self._pending) % n  # loops usually go in order: try the next segment first
            alpha, off = _locate(row[None], torch.tensor([guess]), real, fake)
            seg = guess
            if off[0] > 1e-3:  # else the segment the point lies nearest to
                alphas = ((row - f) * span).sum(1) / span.square().sum(1)  # (n,)
                offs = (row - f - alphas[:, None] * span).norm(dim=1) / span.norm(dim=1)
                seg = int(offs.argmin())
                alpha, off = alphas[seg:seg + 1], offs[seg:seg + 1]
            self._pending[seg] = (alpha[0], off[0])
        if len(self._pending) == n:
            alpha, off = (torch.stack([self._pending[i][k] for i in range(n)]) for k in (0, 1))
            self.calls.append((alpha, off))
            self._pending = {}


def _unwrap(x: Tensor) -> Tensor:
    """The plain tensor under torch.func's wrappers (vmap, grad), which holds every sample of the batch."""
    from torch._C import _functorch

    while _functorch.is_functorch_wrapped_tensor(x):
        x = _functorch.get_unwrapped(x)
    return x


def _locate(p: Tensor, i: Tensor, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
    """alpha (m,) and relative distance off the segment (m,) of points p (m, 784) on segments i (m,)."""
    r, f = real[i].flatten(1), fake[i].flatten(1)
    span = r - f  # (m, 784)
    alpha = ((p - f) * span).sum(1) / span.square().sum(1)
    off = (p - f - alpha[:, None] * span).norm(dim=1) / span.norm(dim=1)
    return alpha, off


@dataclass
class Probe:
    """Networks and inputs of one probe; ``build`` makes the same ones every time."""

    g: ProbeGenerator
    d: ProbeCritic
    x_real: Tensor  # (n, 1, 28, 28)
    y_real: Tensor | None  # (n,) for 3.2


def build(problem: str, name: str) -> Probe:
    """Fresh networks and inputs of probe ``name`` ("main", "extreme" or "sampling") of ``problem``."""
    conditional, seed = problem == "3.2", _SEEDS[name]
    n = SAMPLING_BATCH if name == "sampling" else BATCH
    gen = torch.Generator().manual_seed(seed)
    x_real = 2 * torch.rand(n, 1, 28, 28, generator=gen) - 1
    fake = 2 * torch.rand(n, 1, 28, 28, generator=gen) - 1
    y_real = None
    if conditional:  # balanced labels in the sampling probe, so reusing them looks uniform too
        y_real = (torch.arange(n) % NUM_CLASSES)[torch.randperm(n, generator=gen)]
        x_real = write_labels(x_real, y_real)
    scale = {"extreme": EXTREME_SCALE, "steep": STEEP_SCALE}.get(name, 1.0)
    segment = (x_real, fake) if problem == "4.5" else None
    return Probe(ProbeGenerator(fake, conditional), ProbeCritic(seed, conditional, scale, segment), x_real, y_real)


# ---- torch's global state, which a gan.py may change at import or in a call ------------------------------------

_GUARDED = (("torch", torch, "randn"), ("torch", torch, "rand"), ("torch", torch, "randint"),
            ("torch", torch, "zeros"), ("torch.autograd", torch.autograd, "grad"),
            ("torch.Tensor", torch.Tensor, "backward"), ("torch.nn.Module", nn.Module, "__call__"))


def torch_state() -> dict:
    """torch's global settings that change what the probes build or compute, and the functions they call."""
    state = {"default dtype": torch.get_default_dtype(), "grad mode": torch.is_grad_enabled(),
             "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
             "anomaly detection": torch.is_anomaly_enabled()}
    if hasattr(torch, "get_default_device"):  # torch 2.3 and later
        state["default device"] = torch.get_default_device()
    for owner, obj, name in _GUARDED:
        state[f"{owner}.{name}"] = getattr(obj, name)
    return state


_SETTERS = {"default dtype": torch.set_default_dtype, "grad mode": torch.set_grad_enabled,
            "deterministic algorithms": torch.use_deterministic_algorithms,
            "anomaly detection": torch.autograd.set_detect_anomaly,
            "default device": getattr(torch, "set_default_device", None)}


def restore(saved: dict) -> list[str]:
    """Set torch's global settings back to ``saved`` (from torch_state); a note for each that had changed. A
    replaced torch function is not put back (the student's code may rely on it): it is only reported."""
    notes = []
    for key, value in torch_state().items():
        if key not in saved or value is saved[key] or value == saved[key]:
            continue
        if _SETTERS.get(key):
            _SETTERS[key](saved[key])
            notes.append(f"gan.py changed torch's {key} (to {value}); the probes ran with {saved[key]}, torch's "
                         "own setting")
        else:
            notes.append(f"gan.py replaced {key}: the probes may not measure what they should")
    return notes


def run(module: ModuleType, problem: str, state: dict | None = None) -> dict:
    """Outputs of every probe of ``problem`` on ``module``: {probe name: {...}, "notes": [...]}, or
    {"error": message}. Before each probe torch's global settings are set back to ``state`` (torch_state() before
    the student's module was imported), and "notes" says what had changed.

    A probe's dict holds "d_loss", "g_loss" (scalars), "d_grads" (d_loss's gradients w.r.t. D's parameters),
    "g_grads" (g_loss's w.r.t. G's), "z" and "y" (what G got), "alpha" and "off" (where D's inputs lay, 4.5),
    or "error" (what the function raised). The sampling probe records only the inputs, over SAMPLING_CALLS
    calls; "first_g" and "first_d" count the G and D calls the first of them made.
    """
    function = getattr(module, FUNCTIONS[problem], None)
    if not callable(function):
        return {"error": f"gan.py has no function {FUNCTIONS[problem]}"}
    outputs: dict = {"notes": []}
    for name in PROBES[problem]:
        if state is not None:
            outputs["notes"] += [n for n in restore(state) if n not in outputs["notes"]]
        outputs[name] = _run_probe(function, build(problem, name), name != "sampling")
    return outputs


def _run_probe(function, probe: Probe, with_grads: bool) -> dict:
    torch.manual_seed(PROBE_SEED)  # the function's own draws: the same outputs, so the same messages, every grading
    g, d = probe.g, probe.d
    args = (g, d, probe.x_real.clone()) + (() if probe.y_real is None else (probe.y_real.clone(),))
    out: dict = {}
    try:
        if not with_grads:
            for call in range(SAMPLING_CALLS):
                function(*args, device=torch.device("cpu"))
                if call == 0:
                    out["first_g"], out["first_d"] = len(g.calls), len(d.calls)
        else:
            d_loss, g_loss = _pair(function(*args, device=torch.device("cpu")))
            try:
                out["d_loss"], out["d_grads"] = _value_and_grads(d_loss, d)
                out["g_loss"], out["g_grads"] = _value_and_grads(g_loss, g)
            except RuntimeError as error:  # autograd's: name the lines of gan.py behind it
                where = _where(lambda: function(*args, device=torch.device("cpu")), error)
                out["error"] = f"{_describe(error, located=False)}; {where}" if where else _describe(error)
        if g.changed_in_place():
            out["inplace"] = _inplace_lines(lambda: function(*args, device=torch.device("cpu")))
    except (Exception, SystemExit) as error:  # whatever the solution raises fails this probe only
        out.setdefault("error", _describe(error))
        if isinstance(error, Returned):
            out["returned"] = True
    out["z"] = [z for z, _ in g.calls]
    out["y"] = [y for _, y in g.calls]
    out["alpha"] = [alpha for alpha, _ in d.calls]
    out["off"] = [off for _, off in d.calls]
    out["mismatched"] = d.mismatched
    return out


class Returned(TypeError):
    """What the function returned is not a pair of scalar tensors."""


def _pair(returned):
    if not (isinstance(returned, tuple) and len(returned) == 2):
        raise Returned(f"the function must return (d_loss, g_loss), a pair, got {_kind(returned)}")
    for what, loss in zip(("d_loss", "g_loss"), returned):
        if isinstance(loss, (float, int)):
            raise Returned(f"{what} is a Python number: return a tensor, not .item()")
    return returned


def _where(run, error: RuntimeError) -> str | None:
    """The sentence of codebase/diagnostics.py naming the lines of gan.py behind an autograd error."""
    try:
        from codebase.diagnostics import where_in_gan

        return where_in_gan(run, error)
    except Exception:  # noqa: BLE001 - a second failure of the student's code: the first error stands alone
        return None


def _inplace_lines(run) -> list[int]:
    try:
        from codebase.diagnostics import inplace_lines

        return inplace_lines(run)[:MAX_CALLS]
    except Exception:  # noqa: BLE001
        return []


def _value_and_grads(loss, net: nn.Module) -> tuple[Tensor, list[Tensor]]:
    """The loss as a 0-d tensor and its gradients w.r.t. net's parameters (zeros where it sends none)."""
    if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.is_floating_point():
        raise Returned(f"each loss must be a scalar tensor, got {_kind(loss)}")
    for p in net.parameters():
        p.grad = None
    if loss.requires_grad:
        loss.backward(retain_graph=True)  # d_loss and g_loss may share G's forward pass
    grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in net.parameters()]
    return loss.detach().reshape(()).float().clone(), grads


def _describe(error: BaseException, located: bool = True) -> str:
    """The error in one line, with where it was raised: the last line of gan.py in its traceback, if any."""
    if isinstance(error, Returned):
        return f"{error}"
    frames = traceback.extract_tb(error.__traceback__)
    own = [f for f in frames if Path(f.filename).name == "gan.py"]
    frame = own[-1] if own else frames[-1] if frames else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame and located else ""
    text = str(error).split(" Hint:")[0].strip().rstrip(".")
    return f"{type(error).__name__}: {text}"[:400] + where


def _kind(value) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__
