"""Grading a whole class on one machine: a folder of submissions (an LMS export) into results and grades.csv.

Each submission (a ZIP, a folder of loose files or a bare .py directly in the folder) is graded by its own
``grade.py`` process, ``jobs`` at a time, each with its own sandboxed children. A student's results.json lands in
OUT/results/<student>.json once its grading has ended, and grades.csv is rewritten (atomically) after each one.
A grading that failed (grade.py's exit status other than 0 and 1) is recorded as "needs attention", with no score.
Rerun the same command and it grades only what is not up to date: students without results, gradings that
failed, submissions that changed (their sha256 is in the results) and results of another grader version. So a
run that is killed loses at most the gradings under way. SIGTERM or SIGINT stops every grading under way and
leaves no process behind.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from grading.scoring import grader_version, submission_hash, unfinished, write_results
from grading.status import GRADED, HELD_BACK, NEEDS_ATTENTION
from grading.submission import RUNS

GRADE = Path(__file__).resolve().parents[1] / "grade.py"
JUNK = ("__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini")
COLUMNS = ["student", "name", "late", "status", *RUNS, "total", "notes", "flags", "also submitted"]


class BatchError(ValueError):
    """The folder or the flags cannot be graded as given; the message names the fix."""


# LMS exports, by their documented file names. Canvas: name[_LATE]_<user id>_<attachment id>_<file> (a later
# attachment has a larger id); Moodle: <Full Name>_<participant id>_assignsubmission_file_[<file>] (a folder per
# student when downloaded in folders); Blackboard: <assignment>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>[_<file>],
# beside an attempt receipt (.txt) that is not graded.
PRESETS = {
    "canvas": re.compile(r"^(?P<name>[^_]+?)_(?P<late>LATE_)?(?P<student>\d+)_(?P<order>\d+)_"),
    "moodle": re.compile(r"^(?P<name>.+?)_(?P<student>\d+)_assign(?:submission|feedback)_"),
    "blackboard": re.compile(r"^.+?_(?P<student>[^_]+)_attempt_(?P<order>\d{4}(?:-\d\d){5})"),
}
RECEIPTS = {"blackboard": (".txt",)}


@dataclass(frozen=True)
class Entry:
    student: str  # the key: the LMS's user id with a preset, else the pattern's group or the name
    path: Path
    name: str = ""  # the student's name as the LMS writes it
    late: bool = False
    order: tuple = ()  # a newer submission of the same student sorts later
    others: tuple[str, ...] = ()  # the student's older submissions, not graded

    @property
    def file_name(self) -> str:
        """The student's identifier made safe as a file name, and still one per student: an identifier that had to
        change ("D'Souza Ryan", "D Souza Ryan") carries a short hash of itself."""
        safe = re.sub(r"[^\w.@-]", "_", self.student).lstrip(".") or "_"
        if safe == self.student:
            return safe
        return f"{safe}-{hashlib.sha256(self.student.encode()).hexdigest()[:8]}"


def student_of(name: str, pattern: re.Pattern | None) -> str | None:
    """The student's identifier in a file or folder name: the whole stem, or the pattern's ``student`` group
    (else its first group, else its whole match); None if the pattern does not match."""
    stem = name[: -len(".zip")] if name.lower().endswith(".zip") else name
    if pattern is None:
        return stem
    match = pattern.search(name)
    if not match:
        return None
    if "student" in pattern.groupindex:
        return match["student"]
    return match[1] if pattern.groups else match[0]


def _entry(path: Path, pattern: re.Pattern | None) -> Entry | None:
    student = student_of(path.name, pattern)
    if not student:
        return None
    match = pattern.search(path.name) if pattern else None
    groups = match.groupdict() if match else {}
    order = (groups["order"],) if groups.get("order") else ()
    order = tuple(int(o) if o.isdigit() else o for o in order) + (path.stat().st_mtime_ns,)
    return Entry(student, path, groups.get("name") or student, bool(groups.get("late")), order)


_ATTEMPT = re.compile(r"^(?P<stem>.+)_attempt_(?P<order>\d{4}(?:-\d\d){5})")
_RECEIPT_NAME = re.compile(r"^Name:.*\((?P<username>[^()\s]+)\)\s*$", flags=re.M)


def _blackboard_usernames(folder: Path) -> dict[str, str]:
    """{file name: username} of a Blackboard export. Its names are <assignment>_<username>_attempt_<time>, and both
    the assignment and the username may hold underscores: the assignment is what every name of the export begins
    with; with one student only, the attempt receipt's "Name: ... (username)" line says where it ends."""
    stems = {p.name: m["stem"] for p in folder.iterdir() if (m := _ATTEMPT.match(p.name))}
    receipts = {}
    for path in folder.glob("*_attempt_*.txt"):
        try:
            if found := _RECEIPT_NAME.search(path.read_text(errors="replace")[:4096]):
                receipts[_ATTEMPT.match(path.name)["stem"]] = found["username"]
        except (OSError, TypeError):
            pass
    distinct = sorted(set(stems.values()))
    prefix = ""
    if len(distinct) > 1:
        common = os.path.commonprefix(distinct)
        prefix = common[:common.rfind("_") + 1]  # the assignment ends at an underscore
    names = {}
    for name, stem in stems.items():
        if stem in receipts and stem.endswith("_" + receipts[stem]):
            names[name] = receipts[stem]
        elif prefix and len(stem) > len(prefix):
            names[name] = stem[len(prefix):]
        else:
            names[name] = stem.rsplit("_", 1)[-1]
    return names


def entries(folder: Path, pattern: re.Pattern | None = None, lms: str | None = None) -> list[Entry]:
    """The submissions in ``folder``, one per student: with several of one student, the newest (the LMS's order,
    else the file's time), the others listed in ``others``; raises BatchError on names the pattern does not match.
    ``lms`` names a preset of PRESETS, in place of a pattern."""
    if not folder.is_dir():
        raise BatchError(f"{folder}: not a folder of submissions")
    if lms:
        pattern = PRESETS[lms]
    usernames = _blackboard_usernames(folder) if lms == "blackboard" else {}
    found: dict[str, list[Entry]] = {}
    unmatched = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name in JUNK or path.suffix.lower() in RECEIPTS.get(lms or "", ()):
            continue
        entry = _entry(path, pattern)
        if entry is not None and lms == "blackboard":
            entry = dataclasses.replace(entry, student=usernames.get(path.name, entry.student))
        if entry is None:
            unmatched.append(path.name)
        else:
            found.setdefault(entry.student, []).append(entry)
    if unmatched:
        raise BatchError(f"{'--lms ' + lms if lms else '--student-pattern'} matches no student in {len(unmatched)} "
                         f"name(s), e.g. {', '.join(unmatched[:3])}: fix the pattern, or move those files out of "
                         f"{folder}")
    chosen = []
    for versions in found.values():
        versions.sort(key=lambda e: e.order)
        newest = versions[-1]
        chosen.append(Entry(newest.student, newest.path, newest.name, newest.late, newest.order,
                            tuple(e.path.name for e in versions[:-1])))
    return sorted(chosen, key=lambda e: e.student)


NOTE_CHARACTERS = 240  # of each problem's note: its root cause, cut at a word


def words(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, cut at a word and marked with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "…"


def for_a_human(results: dict) -> str | None:
    """Why a finished grading left the decision to a human (two gan.py files no rule chooses between, an upload that
    cannot be read), or None. Grading it again changes nothing: a TA acts."""
    extra = results.get("extra_data", {})
    if extra.get("status") != NEEDS_ATTENTION:
        return None
    return extra.get("ambiguous") or extra.get("unreadable") or None


def status(results: dict) -> str:
    """GRADED, or NEEDS_ATTENTION when the grading itself failed (no score)."""
    graded = results.get("extra_data", {}).get("status") == GRADED
    return GRADED if graded else NEEDS_ATTENTION


def summary(entry: Entry, results: dict) -> dict:
    """A grades.csv row: points per problem, total, and the first failure of each problem; for a grading that
    failed, no points and the reason."""
    row = {"student": entry.student, "name": entry.name, "late": "late" if entry.late else "",
           "status": status(results), "also submitted": " ".join(entry.others)}
    if row["status"] != GRADED:
        row.update(dict.fromkeys(RUNS, ""), total="", notes=(results.get("output", "").splitlines() or [""])[-1][:300])
        return row
    notes: dict[str, list[str]] = {}  # first failure -> the problems it is the first failure of
    for problem in RUNS:
        tests = [t for t in results.get("tests", []) if t["number"].rsplit(".", 1)[0] == problem]
        row[problem] = f"{sum(t['score'] for t in tests):g}"
        failed = [t for t in tests if t.get("status") == "failed" and t["max_score"] > 0]
        # the root cause: the first failure that is not held back waiting for another check
        root = next((t for t in failed if not t["output"].startswith(HELD_BACK)), failed[0] if failed else None)
        if root:
            notes.setdefault(words((root["output"].splitlines() or [""])[0], NOTE_CHARACTERS), []).append(problem)
    row["total"] = f"{results.get('score', 0):g}"
    row["notes"] = " | ".join(f"{', '.join(problems)}: {note}" for note, problems in notes.items())
    return row


def up_to_date(entry: Entry, results_path: Path, hints: str | None = None) -> bool:
    """Whether the results at ``results_path`` are a finished grading of this very submission by this grader (at
    the hint level ``hints``, if given)."""
    try:
        results = json.loads(results_path.read_text())
        return current(entry, results) and hints in (None, results["extra_data"].get("hints", "handout"))
    except (OSError, ValueError, AttributeError):
        return False


def current(entry: Entry, results: dict) -> bool:
    """Whether ``results`` are a finished grading by this grader of the submission as it is now (if it is still
    there: a report may be rebuilt where the submissions are not)."""
    extra = results.get("extra_data", {})
    return ((extra.get("status") == GRADED or for_a_human(results)) and extra.get("grader_version") == grader_version()
            and (not entry.path.exists() or extra.get("submission_sha256") == submission_hash(entry.path)))


_FORMULA = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")  # and their full-width forms


def csv_cell(value: str) -> str:
    """A CSV cell a spreadsheet shows as text: never a formula (student names and messages come from students).
    OWASP's rule, applied also after leading spaces, which spreadsheets trim on import: a cell that starts with
    = + - @ (or a tab or line break) gets a leading apostrophe."""
    return "'" + value if value[:1] in _FORMULA or value.lstrip(" \u00a0")[:1] in _FORMULA else value


def write_csv(out: Path, students: list[Entry], flags: dict[str, list[str]] | None = None) -> int:
    """Rewrite OUT/grades.csv from the results of ``students`` graded so far, with ``flags`` for a human (by
    student; else those of each results file alone); returns how many rows."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    rows = 0
    for entry in sorted(students, key=lambda e: e.student):
        path = out / "results" / f"{entry.file_name}.json"
        if path.is_file():
            results = json.loads(path.read_text())
            row = summary(entry, results)
            if flags is not None:
                mine = flags.get(entry.student, [])
            else:
                mine = results.get("extra_data", {}).get("flags", []) if row["status"] == GRADED else []
            row["flags"] = " | ".join(str(f)[:300] for f in mine[:10])
            writer.writerow({k: csv_cell(v) for k, v in row.items()})
            rows += 1
    tmp = out / "grades.csv.tmp"
    tmp.write_text(buffer.getvalue())
    os.replace(tmp, out / "grades.csv")
    return rows


class Batch:
    """Runs the gradings; ``stop()`` (from a signal handler) ends every one under way."""

    def __init__(self, out: Path, flags: list[str], jobs: int):
        self.out, self.flags, self.jobs = out, flags, jobs
        self.running: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = False

    def grade_one(self, entry: Entry) -> bool:
        """Grade one submission into OUT/results; True if it was graded, False if the grading failed (its results
        then say so, with status "grading failed", and the next run retries it) or was stopped."""
        pending = self.out / "pending" / f"{entry.file_name}.json"
        work = self.out / "pending" / f"{entry.file_name}.work"  # gan.py and grids, for the class report
        prefix = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []  # dies with us
        with self.lock:
            if self.stopping:
                return False
            proc = subprocess.Popen([*prefix, sys.executable, str(GRADE), str(entry.path.resolve()), "-o",
                                     str(pending), "--keep", str(work), *self.flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    start_new_session=True)
            self.running.add(proc)
        _, err = proc.communicate()
        with self.lock:
            self.running.discard(proc)
        if self.stopping:
            pending.unlink(missing_ok=True)
            shutil.rmtree(work, ignore_errors=True)
            return False
        results = self.out / "results" / f"{entry.file_name}.json"
        try:  # 1: an unreadable submission, graded all the same; anything else, or a placeholder, is a failure
            graded = proc.returncode in (0, 1) and json.loads(pending.read_text())["extra_data"]["status"] == GRADED
        except (OSError, ValueError, KeyError, TypeError):
            graded = False
        if graded:
            kept = self.out / "work" / entry.file_name
            shutil.rmtree(kept, ignore_errors=True)
            if work.is_dir():
                os.replace(work, kept)
            os.replace(pending, results)
            return True
        reason = (err.decode(errors="replace").strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        if reason.startswith("error: needs a human: "):  # graded, but no rule chose what: a TA decides
            print(f"\n{entry.path.name}: {reason[7:307]}", file=sys.stderr)
        else:
            print(f"\n{entry.path.name}: the grading failed ({reason[:300]})", file=sys.stderr)
        try:
            failed = json.loads(pending.read_text())
            assert failed["extra_data"]["status"] != GRADED
        except (OSError, ValueError, KeyError, TypeError, AssertionError):
            failed = unfinished(f"the grading failed ({reason[:300]})")
        write_results(failed, results)
        pending.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(self.out / "work" / entry.file_name, ignore_errors=True)  # an older submission's work
        return False

    def stop(self, signum, frame) -> None:
        with self.lock:
            self.stopping = True
            for proc in self.running:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)  # grade.py kills its children and removes its folders
                except ProcessLookupError:
                    pass

    def run(self, todo: list[Entry], everyone: list[Entry], progress) -> int:
        """Grade ``todo``; returns how many were graded."""
        done = 0
        with ThreadPoolExecutor(self.jobs) as pool:
            futures = [pool.submit(self.grade_one, entry) for entry in todo]
            for future in as_completed(futures):
                done += future.result()
                write_csv(self.out, everyone)
                progress.update(1)
        return done
