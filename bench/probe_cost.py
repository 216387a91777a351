"""The cost of a sandbox mode's probe (grading/sandbox/probe.py) when no result is kept, or (``--grading``) of one
`python -m grading grade` of the reference solution with its mode's probe kept: this checkout against another
(``--baseline``), alternating which goes first, in one run. Prints CPU seconds (the probe's children, where they
are this process's to wait for: not bwrap's; a grading's grader and all it waited for) and wall seconds per mode,
and the ratios of the means.

    sudo python bench/probe_cost.py --baseline /tmp/old-main --modes user process --repeats 3
    sudo python bench/probe_cost.py --grading --baseline /tmp/old-main --modes bwrap user process

Each probe runs in a fresh Python inside the checkout measured, and drops that mode's kept probe first (the
next grading of that checkout probes again, as after any expiry).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "PROBE-COST "
# Run inside the checkout measured: its own grading package, its own probe.
MEASURE = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from grading import sandbox
from grading.sandbox import probe
sandbox.prepare_jail()
probe.forget(sys.argv[2])
before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
result = sandbox.probed(sys.argv[2])
after = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
print("PROBE-COST " + json.dumps({"cpu": cpu, "wall": time.monotonic() - start, "problem": result.problem}))
"""


def measure(root: Path, mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, str(root), mode], capture_output=True, text=True, cwd="/")
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode or not lines:
        sys.exit(f"error: measuring {mode} in {root} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    found = json.loads(lines[-1][len(MARKER):])
    if found["problem"]:
        sys.exit(f"error: {mode} mode cannot run from {root}: {found['problem']}")
    return found


def measure_grading(root: Path, mode: str) -> dict:
    """One grading by the checkout at ``root``: its CPU (this process's waited-for children) and wall seconds."""
    with tempfile.TemporaryDirectory() as folder:
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        done = subprocess.run([sys.executable, "-m", "grading", "grade", str(root / "codebase" / "gan.py"), "-o",
                               f"{folder}/results.json", "--sandbox", mode], cwd=root, capture_output=True, text=True,
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
    parser.add_argument("--grading", action="store_true", help="measure a grading (its probe kept), not a probe")
    args = parser.parse_args(argv)
    checkouts = {"current": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    if args.baseline and not (args.baseline / "grading" / "sandbox" / "probe.py").is_file():
        parser.error(f"--baseline {args.baseline}: not a checkout of this project (no grading/sandbox/probe.py)")
    run = measure_grading if args.grading else measure
    if args.grading:
        for mode in args.modes:
            for root in checkouts.values():
                run(root, mode)  # its probe, kept for the gradings measured
    runs: dict[tuple[str, str], list[dict]] = {}
    for repeat in range(args.repeats):
        for mode in args.modes:
            order = list(checkouts.items())
            for name, root in order if repeat % 2 == 0 else order[::-1]:
                runs.setdefault((name, mode), []).append(run(root, mode))
    print(f"{'mode':8} {'checkout':9} {'CPU s (mean)':>13} {'wall s (mean)':>14}")
    for (name, mode), found in sorted(runs.items(), key=lambda item: (item[0][1], item[0][0])):
        cpu, wall = (statistics.mean(f[key] for f in found) for key in ("cpu", "wall"))
        print(f"{mode:8} {name:9} {cpu:13.2f} {wall:14.2f}")
    if args.baseline:
        for mode in args.modes:
            mean = {(name, key): statistics.mean(f[key] for f in runs[(name, mode)]) for name in checkouts
                    for key in ("cpu", "wall")}
            if mean["baseline", "cpu"] > 0:
                print(f"{mode}: current / baseline CPU = {mean['current', 'cpu'] / mean['baseline', 'cpu']:.2f}, "
                      f"wall = {mean['current', 'wall'] / mean['baseline', 'wall']:.2f}")


if __name__ == "__main__":
    main()
