"""Grade a student's hw3.zip (from make_submission.sh), or a folder of loose files, into Gradescope's results.json.

    python -m grading grade hw3.zip -o results.json               # each problem gets 120 s
    python -m grading grade hw3.zip -o results.json --timeout 20 --sandbox user

Student code runs only in sandboxed children (grading/sandbox: bubblewrap namespaces, else a dedicated uid,
else a process group; each mode probed with a trivial child first); only this process scores, on plain data it
parses with caps (grading/child/wire.py). A placeholder results.json (status "grading failed") is written first,
in case this process itself is stopped; SIGTERM or SIGINT kills every child and removes every temporary folder.
Exit status: 0 graded; 1 graded, but the submission is unreadable; 2 bad flags; 3 the grading itself failed (no
sandbox could run, or a child failed before the student's code ran: no score, grade again). The library is the
``grading`` package.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import zipfile
from pathlib import Path

from grading import sandbox, status
from grading.scoring import DEFAULT_TIMEOUT, GradingFailed, grade, unfinished, write_results

GRADING_FAILED = status.EXIT_GRADING_FAILED  # the grading itself failed (1: an unreadable submission, graded 0)
PARENT_PID = "GRADING_BATCH_PID"  # set by python -m grading class: the pid of the run that started this grading


def timeout_seconds(text: str) -> float:
    """argparse's type for --timeout: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive, finite number of seconds, got {text}")
    return value


def writable_target(parser: argparse.ArgumentParser, flag: str, path: Path) -> None:
    """Exit with a usage error unless a file can be written at ``path``."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        parser.error(f"{flag} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        parser.error(f"{flag} {path}: cannot write there")


def orphaned() -> bool:
    """Whether this grading was started by a class run (python -m grading class) that has died since: setpriv
    --pdeathsig sends SIGTERM only if the run dies after it armed it, so the earlier death is checked here."""
    parent = os.environ.pop(PARENT_PID, "")
    return parent.isdigit() and os.getppid() != int(parent)


def main(argv: list[str] | None = None) -> None:
    if orphaned():
        raise SystemExit(128 + signal.SIGTERM)  # as if the signal had come: no one is left to read the results
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zip", type=Path, nargs="?",
                        help="the student's hw3.zip, a folder of their files, or their gan.py alone")
    parser.add_argument("-o", "--out", type=Path, default=Path("results.json"), help="where to write results.json")
    parser.add_argument("--timeout", type=timeout_seconds, default=DEFAULT_TIMEOUT,
                        help="seconds allowed per problem (default: %(default)s)")
    parser.add_argument("--sandbox", choices=["auto", *sandbox.MODES], default="auto",
                        help="bwrap: bubblewrap namespaces; user: one of the grader's uids per child, for containers "
                             "without user namespaces (needs root); process: a child process group only, for trusted "
                             "code. auto: the first whose trial child runs here, in that order (never process as "
                             "root)")
    parser.add_argument("--parallel", type=int, choices=[1, 2, 3], default=3,
                        help="problems graded at once, each a process forked from the grading's one child "
                             "(default: %(default)s; 1 where CPU is scarce)")
    parser.add_argument("--grid-points", type=float, default=0.0, metavar="POINTS",
                        help="points for each sample grid the classifier judges healthy (default: 0, information)")
    parser.add_argument("--hints", choices=["none", "handout", "full"], default="handout",
                        help="what a failed check says: none what it saw, handout (default) also what that means in "
                             "the handout's terms, full also how to write it (code)")
    parser.add_argument("--keep", type=Path, metavar="FOLDER",
                        help="also write the student's gan.py and final grids there (python -m grading class's class report)")
    parser.add_argument("--prepare", action="store_true",
                        help="only build the jail of user mode (root; setup.sh does it once), probe each sandbox "
                             "mode, load what the grid checks need, and say what runs here")
    args = parser.parse_args(argv)
    if args.prepare:
        problem = sandbox.prepare_jail()
        print(f"python -m grading grade: the jail is not built ({problem}); user mode runs without it" if problem else
              f"python -m grading grade: the jail is ready: {sandbox.jail.ready()}")
        for mode in sandbox.MODES:
            probed = sandbox.probed(mode)
            print(f"python -m grading grade: {mode} mode: " + (f"cannot run ({probed.problem})" if probed.problem else
                                                "runs; " + "; ".join(probed.lines())))
        from grading import grids

        try:
            grids.prepare()
            print("python -m grading grade: the grid checks are ready")
        except grids.GridsUnavailable as error:
            print(f"python -m grading grade: the grids cannot be judged here ({error}); they are reported as not judged")
        return
    if args.zip is None:
        parser.error("the following arguments are required: zip")
    if not (args.grid_points >= 0 and math.isfinite(args.grid_points)):
        parser.error(f"--grid-points {args.grid_points:g}: expected 0 or more")
    if not args.zip.exists():
        parser.error(f"{args.zip}: no such file or folder")
    if not args.zip.is_dir() and not zipfile.is_zipfile(args.zip) and args.zip.suffix.lower() != ".py":
        print(f"warning: {args.zip} is neither a ZIP, a folder nor a .py file; it is graded as an unreadable "
              "submission", file=sys.stderr)
    writable_target(parser, "-o", args.out)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, sandbox.stop)
    sandbox.become_subreaper()
    try:
        write_results(unfinished(), args.out)
    except OSError as error:
        parser.error(f"-o {args.out}: cannot write there ({error.strerror})")
    try:
        mode = sandbox.pick_mode(args.sandbox)
        if mode == "process" and args.sandbox == "auto":
            print("warning: student code runs unsandboxed, as this user (process mode)", file=sys.stderr)
        content = grade(args.zip, args.timeout, mode, args.parallel, args.grid_points, args.keep, args.hints)
        write_results(content, args.out)
    except Exception as error:  # noqa: BLE001 - the grading failed, never the student: no score may come of it
        known = (GradingFailed, sandbox.SandboxUnavailable)
        reason = str(error) if isinstance(error, known) else f"{type(error).__name__}: {error}"
        try:
            write_results(unfinished(f"the grading failed, not your code ({reason}): resubmit, or tell the course "
                                     "staff"), args.out)
        except OSError:
            pass
        print(f"error: the grading failed ({reason}): grade again", file=sys.stderr)
        sys.exit(GRADING_FAILED)
    extra = content["extra_data"]
    print(content["output"].splitlines()[0])
    print(f"sandbox: {extra['sandbox']}" + (f"; {'; '.join(extra['bounds'])}" if extra["bounds"] else ""))
    if extra.get("ambiguous") or extra.get("unreadable"):
        sys.exit(f"error: needs a human: {extra.get('ambiguous') or extra['unreadable']}")
    fatal = [n for n in content["output"].splitlines()[1:] if "not graded" in n or "cannot read" in n]
    if fatal:
        sys.exit(f"error: {fatal[-1]}")

if __name__ == "__main__":
    main()
