"""Build autograder.zip for Gradescope: setup.sh and run_autograder at its root, the grader, and no solution.

    python -m grading autograder                                    # -> autograder.zip
    python -m grading autograder --after-due-date 4.5 --timeout 90  # 4.5's checks shown after the due date

The ZIP holds the grading package (with its command line, ``python -m grading``) and the starter's codebase files
other than gan.py (the submission brings its own), so the reference solution never leaves this repository, and the starter's
requirements.txt with constraints.txt, which pins each of them to the version installed here, where the tests ran:
the autograder can import what students can. The same inputs give the same bytes.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import re
import sys
import zipfile
from pathlib import Path

from grading.grade import timeout_seconds
from grading.child.problems import CHECKS as PROBLEMS
from grading.gradescope import CONFIG, DEFAULTS
from grading.handout import STARTER

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "grading" / "autograder"
GRADESCOPE_TIMEOUT = 600  # seconds: Gradescope's default for a whole run


def grader_files() -> list[str]:
    """What grading needs of this repository, relative to its root: never codebase/gan.py."""
    codebase = [n for n in STARTER if n.startswith("codebase/") and n.endswith(".py") and n != "codebase/gan.py"]
    grading = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "grading").rglob("*.py"))
    return [*grading, *codebase, "codebase/assets/fmnist_classifier.pt"]


def _version(package: str) -> str:
    return importlib.metadata.version(package).split("+")[0]  # 2.14.1+cu130 -> 2.14.1, for the CPU wheel index


def setup_script() -> str:
    text = (TEMPLATES / "setup.sh").read_text()
    for key, package in (("@TORCH@", "torch"), ("@TORCHVISION@", "torchvision"), ("@PYSECCOMP@", "pyseccomp")):
        text = text.replace(key, _version(package))
    return text


def requirement_names(text: str) -> list[str]:
    """The package names of a requirements file."""
    names = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0])
    return names


def constraints() -> str:
    """Each of the starter's requirements pinned to the version installed here, where the tests ran: the
    autograder's Python then holds what students can import, at the versions they were tested with."""
    names = requirement_names((ROOT / "requirements.txt").read_text())
    return "".join(f"{name}=={_version(name)}\n" for name in names)


def build(out: Path, config: dict) -> list[str]:
    """Write autograder.zip to ``out``; returns its member names."""
    members = {"setup.sh": (setup_script().encode(), 0o755),
               "requirements.txt": ((ROOT / "requirements.txt").read_bytes(), 0o644),
               "constraints.txt": (constraints().encode(), 0o644),
               "run_autograder": ((TEMPLATES / "run_autograder").read_bytes(), 0o755),
               CONFIG: ((json.dumps(config, indent=2, sort_keys=True) + "\n").encode(), 0o644)}
    for name in grader_files():
        members[name] = ((ROOT / name).read_bytes(), 0o644)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, (content, mode) in members.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    tmp.replace(out)
    return list(members)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=Path("autograder.zip"), help="ZIP to write")
    parser.add_argument("--timeout", type=timeout_seconds, default=DEFAULTS["timeout"],
                        help="seconds each problem may run (default: %(default)s; Gradescope stops the "
                             "whole run at its own limit, 10 minutes by default)")
    parser.add_argument("--after-due-date", nargs="+", default=[], metavar="PROBLEM", choices=list(PROBLEMS),
                        help="problems whose checks students see only after the due date (the rest are visible)")
    parser.add_argument("--sandbox", choices=["auto", "bwrap", "user"], default="auto",
                        help="how student code is isolated (default auto: bubblewrap where namespaces work, "
                             "else a dedicated uid)")
    parser.add_argument("--grid-points", type=float, default=0, metavar="POINTS",
                        help="points for each sample grid the classifier judges healthy (default: 0, shown as "
                             "information); needs Fashion-MNIST in the image, which setup.sh fetches")
    parser.add_argument("--parallel", type=int, choices=[1, 2, 3], default=DEFAULTS["parallel"],
                        help="problems graded at once (default %(default)s: fits Gradescope's 768 MB)")
    parser.add_argument("--hints", choices=["none", "handout", "full"], default=DEFAULTS["hints"],
                        help="what a failed check tells students: none what it saw, handout (default) also what "
                             "that means in the handout's terms, full also how to write it (code: with unlimited "
                             "resubmissions, a solution oracle); as python -m grading handout's --hints for the starter")
    args = parser.parse_args(argv)
    if not (args.grid_points >= 0 and math.isfinite(args.grid_points)):
        parser.error(f"--grid-points {args.grid_points:g}: expected 0 or more")
    if not args.out.parent.is_dir():
        parser.error(f"-o {args.out}: the folder {args.out.parent} does not exist")
    config = {"timeout": args.timeout, "after_due_date": sorted(set(args.after_due_date)), "sandbox": args.sandbox,
              "parallel": args.parallel, "grid_points": args.grid_points, "hints": args.hints}
    worst = args.timeout * math.ceil(len(PROBLEMS) / args.parallel) + 60  # and about a minute to start
    if worst > GRADESCOPE_TIMEOUT:
        print(f"warning: a submission that hangs may take {worst:g} s, over Gradescope's default limit of "
              f"{GRADESCOPE_TIMEOUT} s, where students see nothing: lower --timeout, raise --parallel, or raise the "
              "assignment's limit", file=sys.stderr)
    names = build(args.out, config)
    print(f"wrote {args.out} ({len(names)} files); upload it as the assignment's autograder on Gradescope")


if __name__ == "__main__":
    main()
