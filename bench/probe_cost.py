"""The cost of a sandbox mode's probe (grading/sandbox/probe.py) when no result is kept: this checkout against
another (``--baseline``), alternating which goes first, in one run. Prints CPU seconds (the probe's children, where
they are this process's to wait for: not bwrap's) and wall seconds per mode, and the ratio of the means.

    sudo python bench/probe_cost.py --baseline /tmp/old-main --modes user process --repeats 3

Each measurement runs in a fresh Python inside the checkout measured, and drops that mode's kept probe first (the
next grading of that checkout probes again, as after any expiry).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--modes", nargs="+", default=["user", "process"], choices=["bwrap", "user", "process"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    checkouts = {"current": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    if args.baseline and not (args.baseline / "grading" / "sandbox" / "probe.py").is_file():
        parser.error(f"--baseline {args.baseline}: not a checkout of this project (no grading/sandbox/probe.py)")
    runs: dict[tuple[str, str], list[dict]] = {}
    for repeat in range(args.repeats):
        for mode in args.modes:
            order = list(checkouts.items())
            for name, root in order if repeat % 2 == 0 else order[::-1]:
                runs.setdefault((name, mode), []).append(measure(root, mode))
    print(f"{'mode':8} {'checkout':9} {'CPU s (mean)':>13} {'wall s (mean)':>14}")
    for (name, mode), found in sorted(runs.items(), key=lambda item: (item[0][1], item[0][0])):
        cpu, wall = (statistics.mean(f[key] for f in found) for key in ("cpu", "wall"))
        print(f"{mode:8} {name:9} {cpu:13.2f} {wall:14.2f}")
    if args.baseline:
        for mode in args.modes:
            mean = {name: statistics.mean(f["cpu"] for f in runs[(name, mode)]) for name in checkouts}
            if mean["baseline"] > 0:
                print(f"{mode}: current / baseline CPU = {mean['current'] / mean['baseline']:.2f}")


if __name__ == "__main__":
    main()
