"""Grading one submission: run each problem's probes in a sandboxed child, score the outputs, build results.json.

The loss problems are scored by the checks of checks.py (1.2: 10, 3.2: 10, 4.5: 15 points); each run's final
sample grid, out_<run>/fake_<step>.png, is checked to be a valid PNG of sane size and judged by the classifier
(grading/grids.py; information, 0 points, unless the course gives it ``grid_points``). The grids' scores, and
flags for a human (samples that are real images), go to extra_data.
Only gan.py touches the disk, under a fixed name beside the starter's other codebase files in a fresh folder per
grading; one child imports torch, then a process per problem (grading/child/workers.py) imports gan.py in a folder
of its own and returns raw probe outputs in wire.py's format; every expected value is computed here.
Whatever the student's code does, the results are complete: the affected part gets 0 points and a message, the
rest is scored. When the grading itself fails (a sandbox that cannot start or clean up), GradingFailed is raised
instead: no score may come of it.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import time
from pathlib import Path

from grading import sandbox
from grading.status import GRADED, GRADING_FAILED, NEEDS_ATTENTION  # noqa: F401 - results.json's statuses
from grading.sandbox import cgroups, cleanup
from grading.child.problems import CHECKS, FUNCTIONS
from grading.child.ready import split as split_ready
from grading.submission import GAN, RUNS, check_grid, read_submission
from grading.handout import STARTER, starter_files

GRID_POINTS = 0.0
UNJUDGED_HERE = "not judged on this grading machine"  # the grader lacks what judging needs: no fault of the grid
DEFAULT_TIMEOUT = 120.0  # seconds per problem, for one submission, a class and on Gradescope alike
HERE = Path(__file__).resolve().parent


def starter_package() -> dict[str, bytes]:
    """The starter's codebase files other than gan.py, as students have them (solutions stubbed)."""
    names = [n for n in STARTER if n.startswith("codebase/") and n.endswith(".py") and n != GAN]
    return {name: content for name, (content, _) in starter_files(names=names).items()}


class GradingFailed(RuntimeError):
    """The grading itself failed (a sandbox that could not start, leftovers that could not be removed): no
    score may come of it; the message says what failed."""


def grade(path: Path, timeout: float = DEFAULT_TIMEOUT, mode: str = "auto", parallel: int = 3,
          grid_points: float = 0.0, keep: Path | None = None, hints: str = "handout") -> dict:
    """The results.json content for the ZIP (or folder of loose files) at ``path``; ``parallel`` problems run at
    once (1 where memory or CPU is scarce: each holds its own networks and tensors); each healthy grid earns ``grid_points``;
    failed checks say what they saw, and more at the hint level ``hints`` (checks.HINTS).
    ``keep``: a folder where the student's gan.py and final grids are written, for the class report. Raises
    GradingFailed if the grading itself failed."""
    mode = sandbox.pick_mode(mode)
    sandbox.become_subreaper()
    start = time.monotonic()
    sub = read_submission(path)
    source = sub.members.get(GAN)
    bounds = sandbox.bounds(mode)
    if isinstance(source, bytes):
        package = starter_package()
        package[GAN] = source
        raw = run_problems(list(RUNS), package, timeout, mode, max(1, min(parallel, len(RUNS))))
        failed = [f"{p}: {r}" for p, r in raw.items() if isinstance(r, GradingFailed)]
        if failed:
            raise GradingFailed("; ".join(failed))
        outcomes = {p: decode(r[0] if isinstance(r, tuple) else r) for p, r in raw.items()}
    elif sub.fatal:
        outcomes = dict.fromkeys(RUNS, sub.fatal)
    else:
        found = sub.listed
        seen = f" (found: {', '.join(found[:10])}{', ...' if len(found) > 10 else ''})" if found else " (it is empty)"
        outcomes = dict.fromkeys(RUNS, f"{GAN}: {source}" if source else
                                 f"no gan.py in the {sub.where}{seen}: expected {GAN}, as make_submission.sh packs it")
    grids = {p: sub.fatal or check_grid(sub.grid(run), run, sub.where) for p, run in RUNS.items()}
    judged = judge_grids(sub, grids, grid_points)
    if keep is not None:
        keep_work(sub, grids, keep)
    notes = sub.notes + ([sub.fatal] if sub.fatal else [])
    changed: dict[str, list[str]] = {}  # what the student's code changed of torch's global settings
    for problem, outcome in outcomes.items():
        if isinstance(outcome, dict) and isinstance(outcome.get("notes"), list):
            for note in outcome["notes"][:10]:
                if isinstance(note, str):
                    changed.setdefault(note[:300], []).append(problem)
    notes += [f"{', '.join(problems)}: {note}" for note, problems in changed.items()]
    content = results(outcomes, grids, notes, time.monotonic() - start, judged, grid_points, hints)
    flags = [f"{p}: {s['copies']} of the 100 samples are real Fashion-MNIST images (or mirrored ones), not drawn by "
             "a generator" for p, s in judged.items() if isinstance(s, dict) and s["copies"]]
    # What is missing from the work, for the class report's "needs a human": the reader's own words.
    missing = [sub.fatal] if sub.fatal else [] if isinstance(source, bytes) else [outcomes["1.2"].splitlines()[0]]
    missing += [f"{p}: {grids[p]}" for p in RUNS if grids[p] and not sub.fatal]
    content["extra_data"].update(sandbox=sandbox.describe(mode), bounds=bounds, submission_sha256=submission_hash(path),
                                 grids={p: s for p, s in judged.items() if isinstance(s, dict)},
                                 not_judged={p: s for p, s in judged.items() if isinstance(s, str)}, flags=flags,
                                 missing=[m[:300] for m in missing])
    if sub.ambiguous:  # no rule chooses what to grade: a human does, and no score stands until then
        content["extra_data"].update(status=NEEDS_ATTENTION, ambiguous=sub.ambiguous[:300])
    elif unreadable := sub.fatal or sub.unreadable:  # an upload that cannot be read is not a 0: ask for a new one
        content["extra_data"].update(status=NEEDS_ATTENTION, unreadable=unreadable[:300])
    return content


def judge_grids(sub, grids: dict[str, str | None], grid_points: float) -> dict[str, dict | str]:
    """Each valid grid's scores (grading/grids.py), else why it was not judged. Raises GradingFailed when the
    grids carry points and the grading machine cannot judge them."""
    from grading.grid_data import GridsUnavailable, folders

    judged: dict[str, dict | str] = {}
    for problem, run in RUNS.items():
        if grids[problem]:
            judged[problem] = "not judged: there is no valid grid"
            continue
        try:
            folders()  # no torch: where Fashion-MNIST is not, the grading says so without loading the classifier
            from grading import grids as judge  # torch: imported once the child is done, and only for a valid grid

            try:
                judged[problem] = judge.judge(sub.grid(run)[1], conditional=problem == "3.2")
            except judge.GridError as error:
                judged[problem] = f"not judged: {sub.grid(run)[0]} is {error}"
        except GridsUnavailable as error:
            if grid_points:
                raise GradingFailed(f"the grids cannot be judged here: {error}") from None
            judged[problem] = f"{UNJUDGED_HERE} ({error})"
    return judged


def keep_work(sub, grids: dict[str, str | None], folder: Path) -> None:
    """The student's gan.py and each valid final grid (its grey pixels only, re-encoded) in ``folder``, for the class
    report."""
    import numpy as np
    from PIL import Image

    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if isinstance(sub.members.get(GAN), bytes):
        (folder / "gan.py").write_bytes(sub.members[GAN])
    for problem, run in RUNS.items():
        if not grids[problem]:
            with Image.open(io.BytesIO(sub.grid(run)[1]), formats=["PNG"]) as image:
                image = Image.fromarray(np.asarray(image.convert("L")))  # the pixels judged, nothing else of the file
            image.thumbnail((906, 906))  # 3x the run scripts' grid at most: the report inlines it
            image.save(folder / f"{problem}.png", optimize=True)


STARTUP_SECONDS = 60.0  # the child's own time beyond its problems' limits: importing torch on a loaded machine


def run_problems(problems: list[str], package: dict[str, bytes], timeout: float, mode: str = "bwrap",
                 parallel: int = 3) -> dict[str, tuple[bytes, list[str]] | str | GradingFailed]:
    """For each problem: (the raw probe outputs, the bounds that held the child) from one child that imports
    codebase/gan.py of ``package`` in a process per problem (``parallel`` at once, each with ``timeout`` seconds),
    or why there are none: a str if the student's code is the reason, a GradingFailed if the grading is (among
    others: a child that failed before it said it was ready, so before the student's code ran)."""
    cpu_seconds = int(timeout) + 5
    rounds = -(-len(problems) // max(1, parallel))
    try:
        with sandbox.child_box(mode, package) as (box, uid):
            argv = sandbox.harness_argv(mode, box, uid, problems, cpu_seconds, timeout, parallel)
            finished = sandbox.run_child(argv, box, timeout * rounds + STARTUP_SECONDS,
                                         tag=str(uid if uid is not None else "p"),
                                         disk=box if mode == "user" else None, env=sandbox.child_env(mode, box))
    except (sandbox.SandboxUnavailable, sandbox.NoSlot) as error:
        return dict.fromkeys(problems, GradingFailed(f"the sandbox could not start ({error})"))
    except (OSError, cleanup.CleanupFailed) as error:
        return dict.fromkeys(problems, GradingFailed(f"the sandbox failed ({error})"))
    facts, stream = split_ready(finished.result or b"")
    if facts is None and finished.result is not None:  # over the cap: only the student's code writes that much
        sandbox.probe.forget(mode)
        said = [line for line in finished.output.strip().splitlines() if line.strip()]
        code = finished.returncode
        how = ("stopped at the time limit" if finished.timed_out else f"killed by {_signal_name(-code)}" if code < 0
               else said[-1][:300] if said else f"exit status {code}")
        return dict.fromkeys(problems, GradingFailed(f"the child failed before the student's code ran ({how})"))
    records, malformed = workers_read(stream, problems) if finished.result is not None else ({}, "")
    outcomes = {}
    for problem in problems:
        if problem in records:
            header, raw = records[problem]
            worker = sandbox.Finished(header["returncode"], header["timed_out"], header["output"],
                                      result=None if header["over"] else raw, oom_killed=finished.oom_killed)
            outcomes[problem] = _outcome(problem, worker, timeout, cpu_seconds, mode, own=True)
        elif malformed:
            outcomes[problem] = GradingFailed(f"the child's results were malformed ({malformed})")
        elif finished.timed_out:  # the child itself outlived every limit: its problems' processes could not end it
            outcomes[problem] = _with_output(
                f"stopped at the grading's time limit of {timeout * rounds + STARTUP_SECONDS:g} s ({timeout:g} s per "
                f"problem, {STARTUP_SECONDS:g} s to start) before this problem's process reported: the process that "
                "runs the problems stopped responding (stopped or frozen by gan.py?)", finished)
        else:  # the child ended (or was ended) before this problem's process did
            outcomes[problem] = _outcome(problem, finished, timeout * rounds + STARTUP_SECONDS, cpu_seconds, mode,
                                         own=False)
    return outcomes


def _outcome(problem: str, finished: sandbox.Finished, timeout: float, cpu_seconds: int, mode: str, own: bool
             ) -> tuple[bytes, list[str]] | str | GradingFailed:
    """What a problem's process (``own``) or, where it sent no record, the whole child ended with."""
    if finished.timed_out:
        return _with_output(f"stopped at the time limit of {timeout:g} s (an endless loop, or waiting forever?); "
                            "where it was is at the end of its output", finished)
    if finished.over_budget:
        return _with_output(f"stopped for writing too much to disk ({finished.over_budget})", finished)
    if finished.result is None:
        return _with_output("the grading process sent back more than the results may hold", finished)
    if own and finished.result:
        try:
            return wire_unframe(finished.result), sandbox.bounds(mode)
        except ValueError:
            return _with_output("the grading process left unreadable results", finished)
    code = finished.returncode
    if not own and mode == "bwrap" and 128 < code < 128 + 65:  # bubblewrap's init reports a signal as 128 + its number
        code = 128 - code
    if finished.oom_killed:
        return _with_output(f"stopped: its processes used more than {cgroups.MEMORY_BYTES >> 30} GiB of memory "
                            "together", finished)
    if -code == signal.SIGXCPU:
        return _with_output(f"stopped at the CPU-time limit of {cpu_seconds} s (all its threads count)", finished)
    if -code in _EXTERNAL:  # neither the time limit, a budget, a memory limit nor the CPU limit (SIGXCPU)
        return GradingFailed(f"problem {problem}'s process was killed by {_signal_name(-code)}, which the grader did "
                             "not send (the machine's out-of-memory killer, or another process?)")
    missing = _MISSING_MODULE.search(finished.output)
    if missing and missing[1].split(".")[0] not in _PROVIDED:
        return _with_output(f"gan.py imports {missing[1]}, which the grader does not have: only {GAN} is graded, "
                            "beside the starter's own files and the installed packages; put what it needs into "
                            "gan.py itself", finished)
    how = f"was killed by signal {_signal_name(-code)}" if code < 0 else f"exited with status {code}"
    return _with_output(f"the grading process {how} before reporting (a crash, an error at import, or a "
                        "sys.exit / os._exit in gan.py?)", finished)


def workers_read(stream: bytes, problems: list[str]):
    from grading.child import workers

    return workers.read(stream, problems)


def wire_unframe(stream: bytes) -> bytes:
    from grading.child import wire  # numpy and torch: imported once the children are done

    return wire.unframe(stream)


def decode(raw: bytes | str) -> dict | str:
    """A child's probe outputs from the bytes it wrote (wire.py's format), or why they cannot be used."""
    if isinstance(raw, str):
        return raw
    from grading.child import wire  # torch: imported once the children are done, as they need the memory more

    try:
        outputs = wire.decode(raw)
    except Exception as error:  # noqa: BLE001 - anything malformed the child wrote
        return f"the grading process left unreadable results ({type(error).__name__})"
    return outputs if isinstance(outputs, dict) else "the grading process returned malformed results"


_MISSING_MODULE = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")
_PROVIDED = ("torch", "torchvision", "numpy")  # a missing one of these is the machine's, not the student's
_EXTERNAL = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _with_output(message: str, finished: sandbox.Finished) -> str:
    output = finished.output.strip()
    return f"{message}\n--- output of gan.py ---\n{output}" if output else message


def results(outcomes: dict[str, dict | str], grids: dict[str, str | None], notes: list[str], seconds: float,
            judged: dict[str, dict | str] | None = None, grid_points: float = 0.0, hints: str = "handout") -> dict:
    """Gradescope's results.json from each problem's probe outputs (or failure), each grid's verdict and scores."""
    tests = []
    for number, listed in CHECKS.items():
        outcome = outcomes[number]
        if isinstance(outcome, dict):
            from grading import checks  # torch, imported once the child is done: it needs the memory more

            verdicts = [(check.name, check.points, message) for check, message in checks.evaluate(number, outcome,
                                                                                                  hints)]
        else:  # the whole problem failed: the full message once, its first line on the other checks (no torch)
            first = outcome.splitlines()[0]
            verdicts = [(name, points, outcome if i == 0 else f"{first} (see {number}.1)")
                        for i, (_, name, points) in enumerate(listed)]
        for i, (name, points, message) in enumerate(verdicts, 1):
            tests.append(_test(f"{number}.{i}", f"{number} {FUNCTIONS[number]}: {name}", points, message))
        run = RUNS[number]
        tests.append(_test(f"{number}.{len(verdicts) + 1}", f"{number} sample grid {run}/fake_<step>.png",
                           GRID_POINTS, grids[number], passed="a valid PNG of sane size"))
        scores = (judged or {}).get(number, grids[number] or "not judged")
        said = _describe(scores) if isinstance(scores, dict) else scores
        fine = scores["healthy"] if isinstance(scores, dict) else scores.startswith(UNJUDGED_HERE)  # not the student's
        tests.append(_test(f"{number}.{len(verdicts) + 2}", f"{number} sample grid judged by the classifier",
                           grid_points, None if fine else said, passed=said))
    score = sum(test["score"] for test in tests)
    top = sum(test["max_score"] for test in tests)
    return {"score": score, "execution_time": round(seconds, 1), "visibility": "visible",
            "output": printable("\n".join([f"Score {score:g} / {top:g}."] + notes)), "tests": tests,
            "extra_data": {"status": GRADED, "grader_version": grader_version(), "hints": hints}}


def _describe(scores: dict) -> str:
    from grading.grids import describe  # torch

    return describe(scores)


def unfinished(reason: str = "the grading did not finish") -> dict:
    """Complete results of a grading that failed (status GRADING_FAILED, no score for the student's code): every
    check says ``reason``."""
    content = results(dict.fromkeys(RUNS, reason), dict.fromkeys(RUNS, reason), [reason], 0.0)
    content["extra_data"]["status"] = GRADING_FAILED
    return content


CLASS_TOOLS = ("batch.py", "report.py", "gradebook.py", "similarity.py", "grade_class.py", "autograder_zip.py",
               "__main__.py")  # a class's tools and the package's command line, not one grading's


def grader_version() -> str:
    """A hash of everything that grades one submission: the grading package but the class tools, the
    classifier's weights, and the starter's codebase files copied beside each gan.py. Results from another
    grader are regraded."""
    digest = hashlib.sha256()
    weights = HERE.parent / "codebase" / "assets" / "fmnist_classifier.pt"
    code = [p for p in sorted(HERE.rglob("*.py")) if p.name not in CLASS_TOOLS or p.parent != HERE]
    for path in [*code, weights]:
        digest.update(str(path.relative_to(HERE.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    for name, content in sorted(starter_package().items()):
        digest.update(name.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()[:16]


def submission_hash(path: Path) -> str:
    """sha256 of the submission's bytes (of a folder: of its files' names and contents, symbolic links as links)."""
    digest = hashlib.sha256()
    path = Path(path)
    if not path.is_dir():
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode() + b"\0")
            if os.path.islink(full):
                digest.update(b"link:" + os.readlink(full).encode())
            elif os.path.isfile(full):
                with open(full, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
            digest.update(b"\0")
    return digest.hexdigest()


def _test(number: str, name: str, points: float, message: str | None, passed: str = "passed") -> dict:
    """A check's entry, passed or failed; one worth 0 points is named as information, and shows red all the same
    when it failed (no grid, a grid below a healthy one), so that Gradescope never shows a failure in green."""
    test = {"name": name, "number": number, "score": 0.0 if message else float(points), "max_score": float(points),
            "output": printable(message or passed), "status": "failed" if message else "passed"}
    if not points:
        test["name"] += " (information, 0 points)"
    return test


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")  # and bidi overrides


def printable(text: str) -> str:
    """Text as shown to students: control characters (terminal escapes among them) replaced, lines kept."""
    return _CONTROL.sub("\ufffd", text)


def write_results(content: dict, path: Path) -> None:
    """Write results.json atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(tmp, path)
