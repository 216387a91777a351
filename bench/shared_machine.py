"""The grader as one of several on a shared machine: two `python -m grading class` batches of different grader versions
(a copy of this checkout with one line changed), a `python -m grading grade` beside them, and a `pip install` of an
unrelated package while they run. Prints each grading's score, the time of each command, what is left behind, and
the jails.

    sudo python bench/shared_machine.py --sandbox user --students 4
    sudo python bench/shared_machine.py --sandbox bwrap --students 4

Needs root (user mode and uid slots). Nothing of the run is kept: the class, the copy and the results are
removed at the end.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grading import autograder_zip  # noqa: E402
from grading.sandbox import jail, slots  # noqa: E402
from grading.submission import RUNS  # noqa: E402


def _grid() -> bytes:
    out = io.BytesIO()
    Image.new("L", (302, 302), 128).save(out, format="PNG")
    return out.getvalue()


def _class(folder: Path, students: int) -> None:
    """Honest submissions: the reference gan.py and a grid per run, as make_submission.sh packs them."""
    import zipfile

    folder.mkdir(mode=0o700)
    grid = _grid()
    for i in range(students):
        with zipfile.ZipFile(folder / f"student{i}_hw3.zip", "w") as zf:
            zf.writestr("codebase/gan.py", (ROOT / "codebase" / "gan.py").read_text())
            for run in RUNS.values():
                zf.writestr(f"{run}/fake_0000100.png", grid)


def _copy(target: Path) -> Path:
    """This grader with one line changed in jail.py and checks.py: another version, with a jail of its own."""
    for name in autograder_zip.grader_files():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, target / name)
    for name in ("grading/grade_class.py", "codebase/gan.py"):  # the batch and its class report
        shutil.copyfile(ROOT / name, target / name)
    for name in ("grading/sandbox/jail.py", "grading/checks.py"):
        (target / name).write_text((target / name).read_text() + "\n# another grader version\n")
    return target


def _leftovers() -> list[str]:
    span = slots.uid_range()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            uid = int((entry / "status").read_text().split("Uid:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
        if uid in span:
            found.append(f"process {entry.name} of uid {uid}")
    for folder in (jail.STATE / "boxes", *(p / "work" for p in jail.all_jails())):
        if folder.is_dir():
            found += [f"folder {p}" for p in folder.iterdir()]
    return found


def _grading(checkout: Path) -> list[str]:
    """``python -m grading`` of that checkout, whatever the working folder."""
    return ["/usr/bin/env", f"PYTHONPATH={checkout}", sys.executable, "-m", "grading"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sandbox", choices=["user", "bwrap"], default="user")
    parser.add_argument("--students", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shared-machine-"))
    try:
        folder = work / "class"
        _class(folder, args.students)
        other = _copy(work / "other")
        jails_before = sorted(p.name for p in jail.all_jails())
        batch = ["--sandbox", args.sandbox, "--jobs", "1"]
        commands = {
            "class (this version)": [*_grading(ROOT), "class", str(folder), "-o", str(work / "out-a"), *batch],
            "class (other version)": [*_grading(other), "class", str(folder), "-o", str(work / "out-b"), *batch],
            "grade": [*_grading(ROOT), "grade", str(folder / "student0_hw3.zip"), "-o", str(work / "single.json"),
                      "--sandbox", args.sandbox],
        }
        started, procs = {}, {}
        for name, argv in commands.items():
            started[name] = time.monotonic()
            with open(work / f"{len(procs)}.err", "w") as err:
                procs[name] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, cwd=work)
        time.sleep(15)
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps",
                              "six"], capture_output=True, text=True)
        print(f"pip install during the batches: exit {pip.returncode}")
        ended, errors = {}, {}
        while len(ended) < len(procs):
            for name, proc in procs.items():
                if name not in ended and proc.poll() is not None:
                    ended[name] = time.monotonic()
                    errors[name] = (work / f"{list(procs).index(name)}.err").read_text()
            time.sleep(0.2)
        for name, proc in procs.items():
            print(f"{name}: exit {proc.returncode} in {ended[name] - started[name]:.0f} s"
                  + (f"; stderr: {errors[name].strip()[-300:]}" if proc.returncode else ""))
        scores = []
        for out in ("out-a", "out-b"):
            with open(work / out / "grades.csv") as f:
                scores += [(out, row["student"], row["status"], row["total"]) for row in csv.DictReader(f)]
        single = json.loads((work / "single.json").read_text())
        scores.append(("grade", "student0", single["extra_data"]["status"], str(single["score"])))
        for row in scores:
            print("  ".join(row))
        honest = all(status == "graded" and float(total) == 35 for _, _, status, total in scores)
        print(f"every honest submission 35/35: {honest}")
        print(f"left behind: {_leftovers() or 'nothing'}")
        print(f"jails before: {jails_before}; after: {sorted(p.name for p in jail.all_jails())}; "
              f"whole: {all(jail.whole(p) for p in jail.all_jails())}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
