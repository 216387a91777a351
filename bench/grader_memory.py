"""The grading process's own cost (not its children's): peak memory (VmHWM) and wall time of `python -m grading grade`,
for an honest hw3.zip and for the largest honest upload (a whole work folder zipped: checkpoints, data, every grid),
from this checkout and, with --other, from another one, in one run.

    sudo python bench/grader_memory.py --other /path/to/older/checkout --sandbox user

Nothing is kept: the uploads and results are written to a temporary folder and removed.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RUNS = ("out_nonsaturating", "out_nonsaturating_conditional", "out_wasserstein_gp")
_MEASURE = """
import atexit, runpy, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            print("VmHWM", int(line.split()[1]) // 1024, file=sys.stderr)
atexit.register(peak)
sys.argv = ["grading", "grade", *sys.argv[2:]]
sys.path.insert(0, ".")  # the checkout measured: the working folder
runpy.run_module("grading", run_name="__main__")
"""


def _png(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (302, 302), shade).save(out, format="PNG")
    return out.getvalue()


def uploads(folder: Path) -> dict[str, Path]:
    """An honest hw3.zip, and a whole work folder zipped (checkpoints, the data, every grid of every run)."""
    gan = (ROOT / "codebase" / "gan.py").read_bytes()
    small = folder / "hw3.zip"
    with zipfile.ZipFile(small, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("codebase/gan.py", gan)
        for run in RUNS:
            zf.writestr(f"{run}/fake_0000937.png", _png(100))
    large = folder / "work-folder.zip"
    with zipfile.ZipFile(large, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((ROOT / "codebase").glob("*.py")):
            zf.write(path, f"hw3/codebase/{path.name}")
        for path in sorted(Path("/usr/share/datasets/fashion-mnist").glob("*.gz")):
            zf.write(path, f"hw3/data/{path.name}")
        for run in RUNS:
            zf.writestr(f"hw3/{run}/checkpoint.pt", os.urandom(20 << 20))  # the two networks and their Adam states
            for step in range(0, 938, 50):
                zf.writestr(f"hw3/{run}/fake_{step:07d}.png", _png(step % 255))
        zf.writestr("hw3/hw3.zip", small.read_bytes())  # the packed submission, inside the folder
    return {"hw3.zip": small, "work folder": large}


def measure(checkout: Path, upload: Path, out: Path, sandbox: str) -> tuple[int, float, str]:
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-E", "-c", _MEASURE, "grade", str(upload), "-o", str(out),
                          "--sandbox", sandbox], capture_output=True, text=True, cwd=checkout)
    seconds = time.monotonic() - start
    peak = int(next(line.split()[1] for line in run.stderr.splitlines() if line.startswith("VmHWM")))
    score = json.loads(out.read_text())["score"] if out.exists() else "?"
    return peak, seconds, f"{score}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, help="another checkout of the grader, measured in the same run")
    parser.add_argument("--sandbox", default="user", choices=["user", "bwrap", "process"])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="grader-memory-"))
    try:
        found = uploads(folder)
        checkouts = {"this": ROOT, **({"other": args.other.resolve()} if args.other else {})}
        for name, upload in found.items():
            print(f"{name} ({upload.stat().st_size >> 20} MiB):")
            results = {}
            for _ in range(args.repeat):  # the first grading of a checkout also probes the modes, builds its jail
                for label, checkout in checkouts.items():
                    results[label] = measure(checkout, upload, folder / f"{label}.json", args.sandbox)
            for label, (peak, seconds, score) in results.items():
                print(f"  {label}: peak {peak} MiB, {seconds:.1f} s, score {score}")
            if len(results) == 2:
                print(f"  this / other: memory {results['this'][0] / results['other'][0]:.2f}, "
                      f"time {results['this'][1] / results['other'][1]:.2f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
