"""The cost of one `python -m grading grade` of the reference solution, its mode's probe kept from a first grading:
this checkout against another (``--baseline``), alternating which goes first, in one run. Prints the CPU seconds of
the grader and all it waited for (its sandboxed child and the processes that forked), the wall seconds, and the
ratios of the means.

    sudo python bench/grading_cost.py --baseline /tmp/old-main --modes user process --repeats 3
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def grade(root: Path, mode: str, folder: Path) -> dict:
    """One grading by the checkout at ``root``: its CPU (this process's waited-for children) and wall seconds."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    done = subprocess.run([sys.executable, "-m", "grading", "grade", str(root / "codebase" / "gan.py"), "-o",
                           str(folder / "results.json"), "--sandbox", mode], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode or "Score 35 / 35" not in done.stdout:
        sys.exit(f"error: grading in {mode} mode from {root} failed (exit {done.returncode}):\n"
                 f"{(done.stdout + done.stderr)[-2000:]}")
    return {"cpu": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
            "wall": time.monotonic() - start}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--modes", nargs="+", default=["user", "process"], choices=["bwrap", "user", "process"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.baseline and not (args.baseline / "grading" / "scoring.py").is_file():
        parser.error(f"--baseline {args.baseline}: not a checkout of this project (no grading/scoring.py)")
    checkouts = {"current": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for mode in args.modes:
            for root in checkouts.values():
                grade(root, mode, Path(folder))  # its probe, kept for the gradings measured
        for repeat in range(args.repeats):
            for mode in args.modes:
                order = list(checkouts.items())
                for name, root in order if repeat % 2 == 0 else order[::-1]:
                    runs.setdefault((name, mode), []).append(grade(root, mode, Path(folder)))
    print(f"{'mode':8} {'checkout':9} {'CPU s (mean)':>13} {'wall s (mean)':>14}")
    for (name, mode), found in sorted(runs.items(), key=lambda item: (item[0][1], item[0][0])):
        cpu, wall = (statistics.mean(f[key] for f in found) for key in ("cpu", "wall"))
        print(f"{mode:8} {name:9} {cpu:13.2f} {wall:14.2f}")
    if args.baseline:
        for mode in args.modes:
            mean = {(name, key): statistics.mean(f[key] for f in runs[(name, mode)]) for name in checkouts
                    for key in ("cpu", "wall")}
            print(f"{mode}: current / baseline CPU = {mean['current', 'cpu'] / mean['baseline', 'cpu']:.2f}, "
                  f"wall = {mean['current', 'wall'] / mean['baseline', 'wall']:.2f}")


if __name__ == "__main__":
    main()
