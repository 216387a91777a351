"""Grade one submission as Gradescope would, under Gradescope's default limits, and report time and peak memory.

    sudo python bench/autograder_limits.py                   # the reference solution, half a CPU
    sudo python bench/autograder_limits.py --cpu 1 --parallel 3 --submission hw3.zip

Builds autograder.zip (`python -m grading autograder`), lays out a Gradescope-like root in a temporary folder, and runs
run_autograder in a fresh cgroup with a CPU quota (cpu.cfs_quota_us, or cpu.max on cgroup v2) and memory
accounting. Peak memory is the cgroup's high-water mark for the whole grading, parent and children together
(memory.max_usage_in_bytes, or memory.peak on v2; it counts page cache too, as a container's limit does).
Needs root and writable cgroups.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grading import autograder_zip  # noqa: E402
from grading.submission import RUNS  # noqa: E402


class Cgroup:
    """A memory + CPU cgroup on v1 (separate hierarchies) or v2 (one), removed on exit."""

    def __init__(self, cpus: float):
        base = Path("/sys/fs/cgroup")
        self.v2 = (base / "cgroup.controllers").is_file()
        name = f"bench-autograder-{os.getpid()}"
        self.dirs = [base / name] if self.v2 else [base / "memory" / name, base / "cpu" / name]
        for d in self.dirs:
            d.mkdir()
        period = 100_000
        if self.v2:
            (self.dirs[0] / "cpu.max").write_text(f"{int(cpus * period)} {period}")
        else:
            (self.dirs[1] / "cpu.cfs_period_us").write_text(str(period))
            (self.dirs[1] / "cpu.cfs_quota_us").write_text(str(int(cpus * period)))

    def wrap(self, argv: list[str]) -> list[str]:
        joins = " && ".join(f'echo $$ > "{d}/cgroup.procs"' for d in self.dirs)
        return ["/bin/sh", "-c", f'{joins} && exec "$@"', "sh", *argv]

    def peak_bytes(self) -> int:
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        return int((self.dirs[0] / name).read_text())

    def remove(self) -> None:
        for d in self.dirs:
            try:
                d.rmdir()
            except OSError:
                pass


def reference_zip(path: Path) -> Path:
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (302, 302)).save(png, "PNG")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("codebase/gan.py", (ROOT / "codebase" / "gan.py").read_text())
        for run in RUNS.values():
            zf.writestr(f"{run}/fake_0500.png", png.getvalue())
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submission", type=Path, help="hw3.zip to grade (default: the reference solution)")
    parser.add_argument("--cpu", type=float, default=0.5, help="CPU quota in cores (default: Gradescope's 0.5)")
    parser.add_argument("--parallel", type=int, default=1, choices=[1, 2, 3], help="problems graded at once")
    parser.add_argument("--sandbox", default="auto", help="GRADER_SANDBOX for run_autograder (default: auto)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("error: run as root: the benchmark makes cgroups")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "autograder")
        (root / "submission").mkdir(parents=True)
        zip_path = Path(tmp, "autograder.zip")
        autograder_zip.build(zip_path, {**autograder_zip.DEFAULTS, "parallel": args.parallel, "after_due_date": []})
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(root / "source")
        submission = args.submission or reference_zip(Path(tmp, "hw3.zip"))
        with zipfile.ZipFile(submission) as zf:
            zf.extractall(root / "submission")
        # GRADE_CGROUPS=off: as in Gradescope's Docker, where no cgroup is writable; the children also stay in
        # this cgroup, so its peak memory counts them.
        env = {**os.environ, "AUTOGRADER_ROOT": str(root), "GRADER_PYTHON": sys.executable,
               "GRADER_SANDBOX": args.sandbox, "GRADE_CGROUPS": "off"}
        cgroup = Cgroup(args.cpu)
        try:
            start = time.monotonic()
            subprocess.run(cgroup.wrap(["bash", str(root / "source" / "run_autograder")]), env=env, check=True,
                           stdout=subprocess.DEVNULL)
            seconds = time.monotonic() - start
            peak = cgroup.peak_bytes()
        finally:
            cgroup.remove()
        results = json.loads((root / "results" / "results.json").read_text())
    import torch

    build = "CUDA" if torch.version.cuda else "CPU-only"
    print(f"torch {torch.__version__} ({build} build), {args.cpu:g} CPU, {args.parallel} problem(s) at once")
    print(f"score {results['score']:g}, {results['output'].splitlines()[-1]}")
    print(f"wall time {seconds:.1f} s, peak memory {peak / 2**20:.0f} MiB (parent and children, page cache included)")


if __name__ == "__main__":
    main()
