"""Grade a folder of submissions (one ZIP or folder per student, as an LMS export gives them) into grades.csv.

    python -m grading class submissions/ -o graded/ --jobs 2
    python -m grading class canvas_export/ -o graded/ --lms canvas
    python -m grading class export/ -o graded/ --student-pattern '^(?P<student>[a-z]+)_'

Writes graded/results/<student>.json (Gradescope's format) for each student, graded/grades.csv (student, name,
late, status, points per problem, total, notes, flags for a human, older submissions), graded/report.html (the
class at a glance, every student's grids; ``python -m grading report graded/`` rebuilds it) and, with --lms, the
gradebook file to import into that LMS. Rerun the same command after a crash, a stop
or a changed submission: only what is not up to date is graded (--regrade grades everyone again, --regrade NAME...
those students). The student is the LMS's user id with --lms, the --student-pattern regex's ``student`` group
(else its first group), or the file or folder name without .zip. Exit status: 0 when every student is graded, 1
when some gradings failed ("needs attention" in grades.csv: rerun to retry them) or the run was stopped.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import sys
from pathlib import Path

from tqdm import tqdm

from grading.grade import timeout_seconds, writable_target
from grading import sandbox
from grading import report
from grading.batch import PRESETS, Batch, BatchError, entries, for_a_human, status, up_to_date, write_csv
from grading.gradebook import DEFAULT_COLUMN
from grading.scoring import DEFAULT_TIMEOUT


def _pattern(text: str) -> re.Pattern:
    try:
        return re.compile(text)
    except re.error as error:
        raise argparse.ArgumentTypeError(f"not a regular expression ({error})") from None


def _for_a_human(results_path) -> bool:
    try:
        return bool(for_a_human(json.loads(results_path.read_text())))
    except (OSError, ValueError):
        return False


def _failed(results_path) -> bool:
    """Whether these results record a grading that failed (not: results of another grader version, or of an older
    submission, which the next run grades again)."""
    try:
        return status(json.loads(results_path.read_text())) != "graded"
    except (OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the folder of submissions")
    parser.add_argument("-o", "--out", type=Path, required=True, help="folder for results/ and grades.csv")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default: %(default)s)")
    parser.add_argument("--timeout", type=timeout_seconds, default=DEFAULT_TIMEOUT,
                        help="seconds allowed per problem (default: %(default)s)")
    parser.add_argument("--sandbox", choices=["auto", *sandbox.MODES], default="auto", help="as for python -m grading grade")
    names = parser.add_mutually_exclusive_group()
    names.add_argument("--lms", choices=sorted(PRESETS), help="the LMS whose export this is: students keyed by its "
                                                              "user id, with their name and a late flag")
    names.add_argument("--student-pattern", type=_pattern, help="regex that finds the student in each name")
    parser.add_argument("--hints", choices=["none", "handout", "full"], default="handout",
                        help="what a failed check says in the feedback, as for python -m grading grade (default: %(default)s)")
    parser.add_argument("--column", default=DEFAULT_COLUMN,
                        help="the assignment's column in the LMS gradebook file (default: %(default)s; Canvas: "
                             "'Title (assignment id)', Blackboard: 'Title |column id' to update an existing one)")
    parser.add_argument("--known", type=Path, metavar="DIR",
                        help="a folder of known solutions (public ones, last year's): gan.py files alike only in "
                             "what these hold are not flagged")
    parser.add_argument("--regrade", nargs="*", metavar="NAME",
                        help="grade again: everyone (no NAME), or these students (their ids)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: expected 1 or more")
    if args.known is not None and not args.known.is_dir():
        parser.error(f"--known {args.known}: not a folder (of known solutions, .py files)")
    unmatched: list[str] = []
    try:
        students = entries(args.folder, args.student_pattern, args.lms, unmatched)
    except BatchError as error:
        parser.error(str(error))
    if not students:
        parser.error(f"{args.folder}: no submissions in it")
    if unmatched:
        print(f"warning: {len(unmatched)} name(s) in {args.folder} are no student's and are not graded: "
              f"{', '.join(unmatched[:5])}{' ...' if len(unmatched) > 5 else ''}", file=sys.stderr)
    if not args.out.exists():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.mkdir(mode=0o700)  # results hold every student's code messages: private from the start
    writable_target(parser, "-o", args.out / "grades.csv")
    try:
        mode = sandbox.pick_mode(args.sandbox)
    except sandbox.SandboxUnavailable as error:
        parser.error(f"--sandbox {args.sandbox}: {error}")
    shared = [p for p in (args.folder, args.out) if sandbox.others_can_read(p)]
    if mode == "user" and shared:  # student code runs as other users: it must not read the class's work
        parser.error(f"user mode: other users can read {shared[0]}, so one student's code could read the others' "
                     f"submissions or results: chmod 700 {shared[0]}")
    (args.out / "results").mkdir(mode=0o700, exist_ok=True)
    (args.out / "work").mkdir(mode=0o700, exist_ok=True)
    report.save_class(args.out, students, args.lms, args.column, args.known)
    shutil.rmtree(args.out / "pending", ignore_errors=True)  # what a killed run left unfinished
    (args.out / "pending").mkdir(mode=0o700)
    if args.regrade and (unknown := set(args.regrade) - {e.student for e in students}):
        parser.error(f"--regrade: no such student: {', '.join(sorted(unknown))}")
    todo = [e for e in students if args.regrade == [] or e.student in (args.regrade or ())
            or not up_to_date(e, args.out / "results" / f"{e.file_name}.json", args.hints)]
    # A submission's three problems run at once, whatever --jobs is: a student whose code hangs costs one time limit
    flags = ["--timeout", str(args.timeout), "--sandbox", mode, "--parallel", "3",
             "--hints", args.hints]
    batch = Batch(args.out, flags, args.jobs)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, batch.stop)
    print(f"{len(students)} submissions, {len(students) - len(todo)} already graded, {len(todo)} to grade")
    with tqdm(total=len(todo), unit="submission", file=sys.stderr) as progress:
        done = batch.run(todo, students, progress)
    shutil.rmtree(args.out / "pending", ignore_errors=True)
    write_csv(args.out, students)
    graded = [e for e in students if up_to_date(e, args.out / "results" / f"{e.file_name}.json", args.hints)]
    attention = [e.student for e in students if e not in graded and _failed(args.out / "results" /
                                                                          f"{e.file_name}.json")]
    human = [e.student for e in graded if _for_a_human(args.out / "results" / f"{e.file_name}.json")]
    graded = [e for e in graded if e.student not in human]
    print(f"{args.out / 'grades.csv'}: {len(graded)} of {len(students)} students graded")
    if not batch.stopping:
        try:
            built = report.build(args.out)
        except Exception as error:  # noqa: BLE001 - the grades are complete: say what failed, and how to retry
            sys.exit(f"error: the class report could not be built ({type(error).__name__}: {error}); grades.csv is "
                     f"complete. Once fixed, run: python -m grading report {args.out}")
        book = f" and {built['gradebook']}" if built["gradebook"] else ""
        print(f"{built['report']}{book} written; {built['flagged']} student(s) flagged for a human")
    if batch.stopping:
        sys.exit(f"stopped after {done} gradings: rerun the same command to grade the "
                 f"{len(students) - len(graded)} left")
    stale = len(students) - len(graded) - len(attention) - len(human)
    if stale and not batch.stopping:
        sys.exit(f"error: {stale} student(s) have results of another grader version or of an older submission "
                 "(the grader or a submission changed during the run): rerun the same command to grade them")
    if human:
        print(f"{len(human)} student(s) need a human, who decides what to grade or asks for a new upload (report.html, "
              f"\"Needs a human\"): {', '.join(human[:20])}")
    if attention:
        sys.exit(f"error: the grading failed for {len(attention)} student(s), who need attention: "
                 f"{', '.join(attention[:20])}: rerun the same command to retry them")


if __name__ == "__main__":
    main()
