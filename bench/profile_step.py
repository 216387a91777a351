"""Where one training step's time goes, per GAN: convolution arithmetic, other ops, optimizer, moving average,
logging, and the rest (Python, dispatch, autograd bookkeeping, OpenMP thread wake-ups), from torch.profiler.

    python bench/profile_step.py                     # the three GANs, 30 profiled steps each after 30 warm-up steps
    python bench/profile_step.py --steps 10 --gan nonsaturating

Each GAN runs in a fresh process (so the OpenMP setting in force is the one the run scripts get) on the loop's own
step (bench/speed.py's ``make_step``: update(), the moving average, the finite checks and ``.item()``). An op's
time is its self CPU time; "convolution" is every conv op and its backward, "matmul" the linear layers; the
optimizer, moving-average and logging rows are the self time of every op under those parts of the step (marked with
``record_function``); "other ops" the remaining op time of the forward and backward passes; "overhead" is the
wall time of the step minus the time of all ops.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "PROFILE_RESULT "
ROWS = ("convolution", "matmul", "other ops", "optimizer", "moving average", "logging", "overhead")


def _category(name: str, region: str) -> str:
    if region in ("optimizer", "moving average", "logging"):
        return region
    if "conv" in name:
        return "convolution"
    if name in ("aten::addmm", "aten::mm", "aten::matmul", "aten::linear", "aten::bmm"):
        return "matmul"
    return "other ops"


def worker(gan: str, warmup: int, steps: int) -> dict:
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import codebase  # noqa: F401 - first: it sets the OpenMP wait policy before torch loads the runtime
    import torch
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile

    import codebase.train as train_mod
    from bench import speed
    from codebase.config import Config
    from codebase.data import load_fashion_mnist, to_unit_range

    cfg = Config(**speed.GANS[gan])
    device = torch.device("cpu")
    images, labels = load_fashion_mnist("train")
    batches = speed.make_batches(images, labels, cfg.batch_size, cfg.seed, to_unit_range, device)
    # The loop's step with its parts labelled: the optimizer steps, the moving average and the per-step logging.
    opt_step = torch.optim.Adam.step
    train_mod_update_ema = train_mod.update_ema

    def labelled_opt_step(self, *args, **kwargs):
        with record_function("optimizer"):
            return opt_step(self, *args, **kwargs)

    def labelled_ema(*args, **kwargs):
        with record_function("moving average"):
            return train_mod_update_ema(*args, **kwargs)

    torch.optim.Adam.step = labelled_opt_step
    train_mod.update_ema = labelled_ema
    check = train_mod.check_finite

    def labelled_check(*args, **kwargs):
        with record_function("logging"):
            return check(*args, **kwargs)

    train_mod.check_finite = labelled_check
    step = speed.make_step(train_mod, cfg, device)
    for _ in range(warmup):
        step(*next(batches))
    walls = []
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            start = time.perf_counter()
            step(*next(batches))
            walls.append(time.perf_counter() - start)
    totals = dict.fromkeys(ROWS, 0.0)
    for event in prof.events():
        if event.name in ("optimizer", "moving average", "logging") or event.name.startswith("ProfilerStep"):
            continue
        region, parent = "", event.cpu_parent
        while parent is not None:
            if parent.name in ("optimizer", "moving average", "logging"):
                region = parent.name
            parent = parent.cpu_parent
        totals[_category(event.name, region)] += event.self_cpu_time_total / 1e3  # ms
    wall = sum(walls) * 1e3
    totals["overhead"] = wall - sum(totals.values())
    top = sorted(((e.key, e.self_cpu_time_total / 1e3 / steps) for e in prof.key_averages()), key=lambda t: -t[1])
    return {"ms_per_step": {k: v / steps for k, v in totals.items()}, "wall_ms": wall / steps,
            "top_ops": top[:12], "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(runtime default)")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gan", choices=["nonsaturating", "wasserstein_gp", "conditional"], action="append")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(MARKER + json.dumps(worker(args.worker, args.warmup, args.steps)))
        return
    for gan in args.gan or ["nonsaturating", "wasserstein_gp", "conditional"]:
        done = subprocess.run([sys.executable, __file__, "--worker", gan, "--warmup", str(args.warmup), "--steps",
                               str(args.steps)], capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.split(MARKER, 1)[1])
        wall = result["wall_ms"]
        print(f"\n{gan}: {wall:.1f} ms per step ({result['threads']} threads, OMP_WAIT_POLICY "
              f"{result['omp_wait_policy']})")
        print("| part | ms per step | share |\n|---|---:|---:|")
        for row, ms in result["ms_per_step"].items():
            print(f"| {row} | {ms:.1f} | {ms / wall:.0%} |")
        print("top ops by self time (ms per step): " + ", ".join(f"{k} {v:.1f}" for k, v in result["top_ops"][:8]))


if __name__ == "__main__":
    main()
