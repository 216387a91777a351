"""Projected wall time of one training epoch of each GAN on this machine, through the real training loop.

    python bench/epoch_time.py [--steps 150]

Trains each GAN for ``--steps`` steps of batch 64 on random IDX data (so the real loop runs: data, both updates,
grids and checkpoints every 50 steps), then projects to the 937 steps of a Fashion-MNIST epoch. Target: the
non-saturating GAN under 120 s per epoch on 2 CPU cores. Ratios to the non-saturating GAN are printed too, since
they hold up better than seconds on a busy machine.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from codebase.train import Config, train  # noqa: E402  (codebase first: it sets OpenMP's wait policy)
from synthetic import make_dataset  # noqa: E402

import torch  # noqa: E402

STEPS_PER_EPOCH = 60_000 // 64
TARGET_SECONDS = 120.0  # non-saturating GAN, one epoch, 2 CPU cores
RUNS = {"nonsaturating": dict(loss_type="nonsaturating"), "wasserstein_gp": dict(loss_type="wasserstein_gp"),
        "conditional": dict(loss_type="nonsaturating", conditional=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps of batch 64 per GAN")
    with tempfile.TemporaryDirectory() as tmp:
        make_dataset(Path(tmp) / "data", n_train=64 * args.steps, n_test=10)
        make_dataset(Path(tmp) / "warmup", n_train=64 * 3, n_test=10)
        seconds = {}
        for name, kw in RUNS.items():
            def run(data, out):
                train(Config(**kw, data_dir=str(Path(tmp) / data), out_dir=str(Path(tmp) / out), metrics=False,
                             device="cpu"))

            run("warmup", f"{name}-warmup")  # lazy imports and first-call costs stay out of the timing
            start = time.perf_counter()
            run("data", name)
            seconds[name] = (time.perf_counter() - start) / args.steps
    print(f"\n{'GAN':<16}{'ms/step':>9}{'epoch (s)':>11}{'vs non-sat.':>13}")
    for name, s in seconds.items():
        print(f"{name:<16}{1000 * s:>9.1f}{s * STEPS_PER_EPOCH:>11.0f}{s / seconds['nonsaturating']:>12.2f}x")
    epoch = seconds["nonsaturating"] * STEPS_PER_EPOCH
    verdict = "meets" if epoch < TARGET_SECONDS else "MISSES"
    print(f"\nnon-saturating epoch {epoch:.0f} s: {verdict} the {TARGET_SECONDS:.0f} s target")


if __name__ == "__main__":
    main()
