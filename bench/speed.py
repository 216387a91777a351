"""How fast each GAN trains on this machine, and what that speed is worth: one script, one table.

    python bench/speed.py                              # the three GANs, this checkout
    python bench/speed.py --baseline /tmp/old-main     # side by side with another checkout, with ratios
    python bench/speed.py --quick                      # a smoke run in seconds (numbers are not meaningful)
    python bench/speed.py --baseline /tmp/old-main --busy 2   # ... with two CPU-bound processes running beside it

For each GAN (non-saturating, WGAN-GP, conditional) a fresh ``python`` process imports the checkout's own
``codebase.train``, loads the data with its own loader, and runs the loop's own step: ``update()`` where the checkout
has one (else the inline step of the older loop, through a small adapter), plus what the loop does around it every
step (slicing the batch, ``check_finite``, ``.item()``). Sample grids and checkpoints (every 50 steps) are left out.
It reports:

* ms per step: the median over ``--steps`` timed steps after ``--warmup`` untimed ones; the median again over
  ``--repeats`` processes. With ``--baseline`` the repeats alternate baseline and current, so drift on a shared
  machine hits both alike; compare the ratios, not the seconds.
* projected epoch time: ms per step x 937 (60,000 images in steps of 64).
* start-up: wall time from launching the process to the moment the first step can start (interpreter, imports,
  data load, building the networks), and the first step on its own (first-call costs).
* peak memory: the process's peak resident set (``VmHWM``) after the timed steps.
* FLOPs per step, counted by ``torch.utils.flop_counter.FlopCounterMode`` over one whole step (convs and matmuls of
  both updates and their backward passes). WGAN-GP's double backward is counted as executed: autograd dispatches
  it as ordinary convolution ops, about twice the convolution work a minimal hand count of the penalty's gradient
  gives (it also recomputes weight gradients as convolutions). Heavy ops the counter has no formula for are
  listed as uncounted; ``tests/test_bench.py`` checks the count against a hand count.
* the same run's matmul peak in fp32, and in bf16 where the CPU has native bf16 (AVX512-BF16 or AMX), and the
  roofline fraction: achieved GFLOP/s over the fp32 peak (over the bf16 peak too when the step runs bf16 matmuls).
* ``--busy N``: N processes that keep a core busy each (a Python loop; what a student's browser, another training
  run or a shared machine does) run during every measurement, so that the step's behaviour under load is measured
  too: OpenMP threads that spin while they wait lose the CPU to them.
* how cost grows (this checkout only): epoch time against batch size (32, 64, 128, 256); ``--epochs`` short epochs
  of a truncated training set, each one's time and the resident set after it (a growing one is flagged as a leak).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ENV = dict(os.environ)  # workers see the caller's environment, as a run script would, not this process's changes
ROOT = Path(__file__).resolve().parents[1]
TRAIN_IMAGES = 60_000
GANS = {"nonsaturating": dict(loss_type="nonsaturating"), "wasserstein_gp": dict(loss_type="wasserstein_gp"),
        "conditional": dict(loss_type="nonsaturating", conditional=True)}
HEAVY_OPS = ("conv", "mm", "matmul", "linear", "addbmm", "einsum")  # names of ops that should carry a FLOP count
MARKER = "BENCH_RESULT "
SHORT = {"float32": "fp32", "bfloat16": "bf16"}
LEAK_MB = 16.0  # resident-set growth from the first epoch to the last that counts as a leak


# ---- Worker: one fresh process per measurement. torch is imported inside functions, so start-up is timed whole ----


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmHWM: peak resident set, VmRSS: current) in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


class _NoModuleTracker:
    """Stands in for FlopCounterMode's per-module tracker, whose backward hooks make ``torch.autograd.grad`` w.r.t. a
    leaf input (WGAN-GP's ``x_hat``) fail ("A leaf node was passed to _will_engine_execute_node"). Totals are kept."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def count_step_flops(step) -> dict:
    """Run ``step()`` once under FlopCounterMode.

    Returns ``{"flops": int, "by_op": {op: flops}, "uncounted": [heavy ops with no FLOP formula],
    "matmul_dtypes": [dtypes of the conv/matmul inputs]}``.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    class Spy(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.uncounted, self.dtypes = set(), set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if any(h in name for h in HEAVY_OPS):
                if func.overloadpacket not in flop_registry:
                    self.uncounted.add(str(func))
                self.dtypes.update(str(a.dtype) for a in args[:2] if isinstance(a, torch.Tensor))
            return func(*args, **(kwargs or {}))

    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModuleTracker()
    spy = Spy()
    with counter, spy:
        step()
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return {"flops": int(counter.get_total_flops()), "by_op": by_op, "uncounted": sorted(spy.uncounted),
            "matmul_dtypes": sorted(spy.dtypes)}


def make_step(train_mod, cfg, device):
    """The checkout's training step for ``cfg``, on fresh networks and optimizers: ``step(x_real, y) -> None``."""
    import torch

    torch.manual_seed(cfg.seed)
    g, d = train_mod.build_models(cfg, device)
    betas = train_mod.ADAM_BETAS[cfg.loss_type]
    g_opt = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=betas)
    d_opt = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=betas)

    if hasattr(train_mod, "update"):  # the handout's loss API: the loop calls update() each step
        _, loss_fn = train_mod.loss_function(cfg)
        # What the loop adds around update() where the checkout has it: bf16 autocast, the moving average of G.
        amp = (train_mod.amp_dtype(cfg, device),) if hasattr(train_mod, "amp_dtype") else ()
        g_ema = copy.deepcopy(g).requires_grad_(False) if getattr(cfg, "ema", 0) else None
        counter = iter(range(10**9))

        def losses(x_real, y):
            args = (g, d, x_real) + ((y,) if cfg.conditional else ())
            out = train_mod.update(loss_fn, args, g, d, g_opt, d_opt, device, *amp)
            if g_ema is not None:
                train_mod.update_ema(g_ema, g, cfg.ema, next(counter))
            return out
    else:  # the older API (gan.LOSSES of per-network losses): that loop's step, which it wrote inline
        from codebase.gan import LOSSES, sample_z

        loss = LOSSES[cfg.loss_type]

        def losses(x_real, y):
            y = y if cfg.conditional else None
            x_fake = g(sample_z(len(x_real), cfg.dim_z, device), y)
            d_loss = loss.d_loss(d, x_real, x_fake.detach(), y)  # (1) update D
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            d.requires_grad_(False)  # (2) update G against the updated D
            g_loss = loss.g_loss(d, x_fake, y)
            d.requires_grad_(True)
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            g_opt.step()
            return d_loss.detach(), g_loss.detach()

    def step(x_real, y):
        d_loss, g_loss = losses(x_real, y)
        check = getattr(train_mod, "check_finite", None) or train_mod._check_finite  # an older checkout's name
        check("d_loss", d_loss, 0, Path("checkpoint.pt"))  # the loop's per-step checks and log
        check("g_loss", g_loss, 0, Path("checkpoint.pt"))
        d_loss.item(), g_loss.item()

    return step


def make_batches(images, labels, batch_size: int, seed: int, to_unit_range, device):
    """Endless (x_real, y) batches in the loop's order: one permutation per epoch, as the loop draws them."""
    import torch

    steps = len(images) // batch_size
    epoch = 0
    while True:
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        for i in range(steps):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            yield to_unit_range(images[idx]).to(device), labels[idx].to(device)
        epoch += 1


def _time_steps(step, batches, n: int) -> list[float]:
    """Seconds of each of n steps, batch preparation included."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step(*next(batches))
        times.append(time.perf_counter() - start)
    return times


def matmul_peak(dtype_name: str, quick: bool) -> float:
    """Best GFLOP/s of square matmuls in this dtype, on this process's threads."""
    import torch

    dtype = getattr(torch, dtype_name)
    best = 0.0
    for n in ((512,) if quick else (1024, 2048)):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        torch.mm(a, b)  # first call: packing, thread start
        for _ in range(3 if quick else 12):
            start = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); without it bf16 is emulated and slow."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def worker(a: argparse.Namespace) -> dict:
    """One measurement in this fresh process; ``a.t0`` is the parent's clock when it launched us."""
    sys.path.insert(0, a.root)  # the checkout under test, and nothing of this one
    from codebase import train as train_mod  # its imports: torch, torchvision, tqdm, ... as a run script pays them
    from codebase.data import load_fashion_mnist, to_unit_range

    t_import = time.time()
    images, labels = load_fashion_mnist("train", a.data_dir)
    t_data = time.time()
    import torch

    device = torch.device("cpu")
    cfg = train_mod.Config(**GANS[a.gan], batch_size=a.batch, device="cpu")
    step = make_step(train_mod, cfg, device)
    batches = make_batches(images, labels, a.batch, cfg.seed, to_unit_range, device)
    t_ready = time.time()
    first = _time_steps(step, batches, 1)[0]
    _time_steps(step, batches, a.warmup)
    times = _time_steps(step, batches, a.steps)
    out = {"root": a.root, "gan": a.gan, "batch": a.batch, "threads": torch.get_num_threads(),
           "torch": torch.__version__, "ms_per_step": 1000 * statistics.median(times),
           "startup_s": t_ready - a.t0, "import_s": t_import - a.t0, "data_s": t_data - t_import,
           "first_step_ms": 1000 * first, "peak_rss_mb": _status_mb("VmHWM")}
    out.update(count_step_flops(lambda: step(*next(batches))))

    if a.extras:  # how cost grows, measured in this process after its peak memory was read
        out["batch_sweep"] = {}
        for batch in a.batch_sizes:
            sweep_step = make_step(train_mod, train_mod.Config(**GANS[a.gan], batch_size=batch, device="cpu"), device)
            sweep_batches = make_batches(images, labels, batch, cfg.seed, to_unit_range, device)
            _time_steps(sweep_step, sweep_batches, a.warmup)
            ms = 1000 * statistics.median(_time_steps(sweep_step, sweep_batches, a.sweep_steps))
            out["batch_sweep"][str(batch)] = {"ms_per_step": ms, "epoch_s": ms / 1000 * (TRAIN_IMAGES // batch)}
        n = a.epoch_steps * a.batch  # short epochs: the first n images, the loop's per-epoch reshuffle
        epoch_batches = make_batches(images[:n], labels[:n], a.batch, cfg.seed, to_unit_range, device)
        out["epochs"] = [{"s": sum(_time_steps(step, epoch_batches, a.epoch_steps)), "rss_mb": _status_mb("VmRSS")}
                         for _ in range(a.epochs)]
    if a.peaks:
        out["peak_gflops"] = {"float32": matmul_peak("float32", a.quick)}
        if native_bf16():
            out["peak_gflops"]["bfloat16"] = matmul_peak("bfloat16", a.quick)
    return out


# ---- Parent: launch the workers, interleave the checkouts, print the table --------------------------------------


class Busy:
    """``n`` processes that each keep one core busy until the block ends."""

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self):
        loop = "import time\nwhile True:\n    sum(i * i for i in range(10000))\n"
        self.procs = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(self.n)]
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.kill()
            proc.wait()


def run_worker(root: Path, gan: str, opts: argparse.Namespace, extras: bool = False, peaks: bool = False) -> dict:
    """Launch one worker process and return its result dict; its stderr is shown if it fails."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", "--_root", str(root), "--_gan", gan,
           "--steps", str(opts.steps), "--warmup", str(opts.warmup), "--batch", str(opts.batch),
           "--epochs", str(opts.epochs), "--epoch_steps", str(opts.epoch_steps),
           "--sweep_steps", str(opts.sweep_steps), "--batch_sizes", *map(str, opts.batch_sizes)]
    cmd += ["--data_dir", opts.data_dir] if opts.data_dir else []
    cmd += ["--_extras"] if extras else []
    cmd += ["--_peaks"] if peaks else []
    cmd += ["--quick"] if opts.quick else []
    cmd += ["--_t0", repr(time.time())]
    proc = subprocess.run(cmd, env=ENV, cwd=str(root), capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if proc.returncode or not lines:
        sys.exit(f"error: the worker for {gan} in {root} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARKER):])


def measure(opts: argparse.Namespace) -> dict:
    """All runs; with a baseline, each repeat alternates which checkout goes first."""
    checkouts = {"current": ROOT} | ({"baseline": Path(opts.baseline).resolve()} if opts.baseline else {})
    runs = {name: {gan: [] for gan in opts.gans} for name in checkouts}
    for r in range(opts.repeats):
        order = list(checkouts) if r % 2 else list(checkouts)[::-1]
        for gan in opts.gans:
            for name in order:
                last = r == opts.repeats - 1 and name == "current"
                print(f"  repeat {r + 1}/{opts.repeats}: {gan:<15} {name}", file=sys.stderr, flush=True)
                runs[name][gan].append(run_worker(checkouts[name], gan, opts, extras=last,
                                                  peaks=last and gan == opts.gans[0]))
    return {"checkouts": {k: str(v) for k, v in checkouts.items()}, "runs": runs}


def summarize(runs: list[dict]) -> dict:
    """Medians over repeats of one GAN in one checkout; FLOPs and extras from the last repeat."""
    med = {k: statistics.median(r[k] for r in runs)
           for k in ("ms_per_step", "startup_s", "import_s", "data_s", "first_step_ms", "peak_rss_mb")}
    last = runs[-1]
    med.update({k: last[k] for k in ("flops", "by_op", "uncounted", "matmul_dtypes", "batch", "threads", "torch")})
    med.update({k: last[k] for k in ("batch_sweep", "epochs", "peak_gflops") if k in last})
    med["epoch_s"] = med["ms_per_step"] / 1000 * (TRAIN_IMAGES // med["batch"])
    med["gflops_per_s"] = med["flops"] / 1e9 / (med["ms_per_step"] / 1000)
    return med


def report(result: dict) -> str:
    """The readable table."""
    cur = result["summary"]["current"]
    base = result["summary"].get("baseline")
    first = next(iter(cur.values()))
    peaks = result["peak_gflops"]
    busy = result["options"].get("busy")
    lines = [f"torch {first['torch']}, {first['threads']} threads, batch {first['batch']}; "
             + (f"{busy} CPU-bound processes running beside it; " if busy else "no load beside it; ")
             + f"{result['options']['steps']} timed steps after {result['options']['warmup']} warm-up, "
             f"median of {result['options']['repeats']} process(es) per GAN and checkout",
             "matmul peak (this run): " + ", ".join(f"{SHORT[k]} {v:.0f} GFLOP/s" for k, v in peaks.items())
             + ("" if "bfloat16" in peaks else " (no native bf16 on this CPU)"), ""]

    def row(cells, widths):
        return "".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cells, widths)))

    w = [16, 9, 9, 11, 9, 9, 10, 11, 10]
    lines.append(row(["GAN", "ms/step", "epoch s", "GFLOP/step", "GFLOP/s", "of fp32", "of bf16", "start-up s",
                      "peak MB"], w))
    for gan, s in cur.items():
        bf16 = (f"{s['gflops_per_s'] / peaks['bfloat16']:.0%}"
                if "bfloat16" in peaks and "torch.bfloat16" in s["matmul_dtypes"] else "fp32 step")
        lines.append(row([gan, f"{s['ms_per_step']:.1f}", f"{s['epoch_s']:.0f}", f"{s['flops'] / 1e9:.2f}",
                          f"{s['gflops_per_s']:.0f}", f"{s['gflops_per_s'] / peaks['float32']:.0%}", bf16,
                          f"{s['startup_s']:.2f}", f"{s['peak_rss_mb']:.0f}"], w))
    lines.append("start-up = interpreter + imports + data load + networks; "
                 + "; ".join(f"{g}: imports {s['import_s']:.2f} s, data {s['data_s']:.2f} s, "
                             f"first step {s['first_step_ms']:.0f} ms" for g, s in cur.items()))
    uncounted = sorted({op for s in cur.values() for op in s["uncounted"]})
    lines.append("heavy ops without a FLOP count: " + (", ".join(uncounted) if uncounted else "none"))

    if base:
        lines += ["", f"against the baseline {result['checkouts']['baseline']} (ratio = current / baseline; "
                      f"below 1 is faster or smaller)"]
        w2 = [16, 8, 9, 7, 11, 12, 7, 8, 9, 7, 9, 9]
        lines.append(row(["GAN", "ms now", "ms base", "ratio", "start-up s", "start base", "ratio", "MB now",
                          "MB base", "ratio", "GFLOP", "GF base"], w2))
        for gan, s in cur.items():
            b = base[gan]
            lines.append(row([gan, f"{s['ms_per_step']:.1f}", f"{b['ms_per_step']:.1f}",
                              f"{s['ms_per_step'] / b['ms_per_step']:.2f}", f"{s['startup_s']:.2f}",
                              f"{b['startup_s']:.2f}", f"{s['startup_s'] / b['startup_s']:.2f}",
                              f"{s['peak_rss_mb']:.0f}", f"{b['peak_rss_mb']:.0f}",
                              f"{s['peak_rss_mb'] / b['peak_rss_mb']:.2f}", f"{s['flops'] / 1e9:.2f}",
                              f"{b['flops'] / 1e9:.2f}"], w2))
        lines.append("per repeat, ms/step current / baseline: " + "; ".join(
            f"{g}: " + " ".join(f"{c['ms_per_step']:.1f}/{b_['ms_per_step']:.1f}"
                                for c, b_ in zip(result["runs"]["current"][g], result["runs"]["baseline"][g]))
            for g in cur))

    sizes = [str(b) for b in result["options"]["batch_sizes"]]
    lines += ["", "epoch time against batch size (ms/step x steps per epoch; this checkout)"]
    w3 = [16] + [18] * len(sizes)
    lines.append(row(["GAN"] + [f"batch {b}" for b in sizes], w3))
    for gan, s in cur.items():
        lines.append(row([gan] + [f"{s['batch_sweep'][b]['ms_per_step']:.1f} ms {s['batch_sweep'][b]['epoch_s']:.0f} s"
                                  for b in sizes], w3))

    o = result["options"]
    lines += ["", f"{o['epochs']} short epochs of {o['epoch_steps']} steps each: time (x epoch 1) and resident set"]
    for gan, s in cur.items():
        e = s["epochs"]
        growth = e[-1]["rss_mb"] - e[0]["rss_mb"]
        verdict = f"LEAK? +{growth:.0f} MB" if growth > LEAK_MB else f"flat ({growth:+.0f} MB)"
        lines.append(row([gan, "  ".join(f"{x['s']:.2f} s ({x['s'] / e[0]['s']:.2f}x) {x['rss_mb']:.0f} MB" for x in e)
                          + f"   {verdict}"], [16, 0]))
    return "\n".join(lines)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", help="another checkout (e.g. a git worktree of an older commit) to run side by side")
    p.add_argument("--steps", type=_positive_int, default=60, help="timed steps per process (default: %(default)s)")
    p.add_argument("--warmup", type=_positive_int, default=5, help="untimed steps before them (default: %(default)s)")
    p.add_argument("--repeats", type=_positive_int, default=3, help="processes per GAN and checkout (default: %(default)s)")
    p.add_argument("--batch", type=_positive_int, default=64, help="batch size of the main measurement (default: %(default)s)")
    p.add_argument("--batch_sizes", type=_positive_int, nargs="+", default=[32, 64, 128, 256], help="the batch-size sweep")
    p.add_argument("--sweep_steps", type=_positive_int, default=20, help="timed steps per batch size (default: %(default)s)")
    p.add_argument("--epochs", type=_positive_int, default=3, help="short epochs for the leak check (default: %(default)s)")
    p.add_argument("--epoch_steps", type=_positive_int, default=40, help="steps per short epoch (default: %(default)s)")
    p.add_argument("--gans", nargs="+", choices=list(GANS), default=list(GANS), help="default: all three")
    p.add_argument("--data_dir", help="folder with the Fashion-MNIST IDX files (default: where run_gan.py looks)")
    p.add_argument("--quick", action="store_true", help="a smoke run: few steps, one repeat, small sweep")
    p.add_argument("--busy", type=int, default=0, metavar="N",
                   help="run N CPU-bound processes beside the measurement (e.g. one per core; default: none)")
    p.add_argument("--json", help="also write every measurement to this JSON file")
    for hidden, kw in (("--_worker", dict(action="store_true")), ("--_extras", dict(action="store_true")),
                       ("--_peaks", dict(action="store_true")), ("--_root", {}), ("--_gan", {}),
                       ("--_t0", dict(type=float))):
        p.add_argument(hidden, help=argparse.SUPPRESS, dest=hidden[2:], **kw)
    opts = p.parse_args(argv)
    if opts.baseline and not (Path(opts.baseline) / "codebase" / "train.py").is_file():
        p.error(f"--baseline {opts.baseline}: no codebase/train.py there; pass a checkout of this project")
    if opts._worker:
        a = argparse.Namespace(**vars(opts), root=opts._root, gan=opts._gan, t0=opts._t0, extras=opts._extras,
                               peaks=opts._peaks)
        print(MARKER + json.dumps(worker(a)), flush=True)
        return
    if opts.quick:
        opts.steps, opts.warmup, opts.repeats, opts.sweep_steps = 3, 1, 1, 2
        opts.epochs, opts.epoch_steps, opts.batch_sizes = 2, 2, [32, 64]
    if opts.data_dir:
        opts.data_dir = str(Path(opts.data_dir).resolve())  # workers run in the checkout's folder
    with Busy(opts.busy):
        result = measure(opts)
    result["options"] = {k: v for k, v in vars(opts).items() if not k.startswith("_")}
    result["summary"] = {name: {gan: summarize(r) for gan, r in per_gan.items()}
                         for name, per_gan in result["runs"].items()}
    result["peak_gflops"] = next(s["peak_gflops"] for s in result["summary"]["current"].values()
                                 if "peak_gflops" in s)
    print(report(result))
    if opts.json:
        Path(opts.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
