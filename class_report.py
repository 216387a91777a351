"""Rebuild a graded class's report.html, the flags in its grades.csv and its LMS gradebook file, from what
grade_all.py left in the folder (results/, work/, class.json); grades nothing.

    python class_report.py graded/
"""
from __future__ import annotations

import argparse
from pathlib import Path

from grading import report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="grade_all.py's -o folder")
    args = parser.parse_args(argv)
    if not (args.folder / report.CLASS_FILE).is_file():
        parser.error(f"{args.folder}: no {report.CLASS_FILE} in it: give the -o folder of a grade_all.py run")
    try:
        built = report.build(args.folder)
    except OSError as error:
        parser.error(f"{args.folder}: cannot write the report there ({error.strerror})")
    book = f" and {built['gradebook']}" if built["gradebook"] else ""
    print(f"{built['report']}{book} written ({built['bytes'] >> 10} KiB); {built['flagged']} student(s) flagged")


if __name__ == "__main__":
    main()
