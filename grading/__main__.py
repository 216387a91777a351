"""The instructor's and the grader's one command: python -m grading VERB [options] (VERB --help for each).

    python -m grading handout -o hw3_starter/         # the starter students get (no solution in it)
    python -m grading grade hw3.zip -o results.json   # one submission, into Gradescope's results.json
    python -m grading class export/ -o graded/ --lms canvas   # a whole class, resumable; report and gradebook
    python -m grading report graded/                  # rebuild a graded class's report.html and gradebook
    python -m grading autograder                      # autograder.zip for Gradescope
    python -m grading prepare                         # set-up as root: user mode's jail, the grid checks' data

Run it from the repository's root (or with it on PYTHONPATH): Python looks for ``grading`` in the working folder.
"""
from __future__ import annotations

import importlib
import sys

VERBS = {  # verb: (module, what it does)
    "handout": ("grading.handout", "build the starter students get, the solution stubbed out"),
    "grade": ("grading.grade", "grade one submission (hw3.zip, a folder, or gan.py) into results.json"),
    "class": ("grading.grade_class", "grade a folder of submissions (an LMS export) into grades.csv and a report"),
    "report": ("grading.report", "rebuild a graded class's report.html, flags and gradebook file"),
    "autograder": ("grading.autograder_zip", "build autograder.zip for Gradescope"),
    "prepare": ("grading.grade", "set up this machine as root: user mode's jail, the grid checks' data"),
}


def usage() -> str:
    width = max(map(len, VERBS))
    lines = [__doc__.splitlines()[0], "", "verbs:"]
    lines += [f"  {verb:<{width}}  {what}" for verb, (_, what) in VERBS.items()]
    return "\n".join(lines + ["", "python -m grading VERB --help: the options of VERB"])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        sys.exit(f"python -m grading: no verb {verb!r}: choose one of {', '.join(VERBS)}")
    module = importlib.import_module(VERBS[verb][0])
    sys.argv[0] = f"python -m grading {verb}"  # argparse's usage line
    module.main(["--prepare", *rest] if verb == "prepare" else rest)


if __name__ == "__main__":
    main()
