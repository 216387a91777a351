"""Grading a whole class on one machine: a folder of submissions (an LMS export) into results and grades.csv.

Each submission (a ZIP or a folder of loose files directly in the folder) is graded by its own ``grade.py``
process, ``jobs`` at a time, each with its own sandboxed children. A student's results.json lands in
OUT/results/<student>.json only once its grading has finished, and grades.csv is rewritten (atomically) after
each one, so a run that is killed loses at most the gradings under way: rerun the same command and it grades
only the students without results. SIGTERM or SIGINT stops every grading under way and leaves no process behind.
"""
from __future__ import annotations

import csv
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

from grading.submission import RUNS

GRADE = Path(__file__).resolve().parents[1] / "grade.py"
JUNK = ("__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini")


class BatchError(ValueError):
    """The folder or the flags cannot be graded as given; the message names the fix."""


@dataclass(frozen=True)
class Entry:
    student: str
    path: Path

    @property
    def file_name(self) -> str:
        """The student's identifier made safe as a file name."""
        return re.sub(r"[^\w.@-]", "_", self.student).lstrip(".") or "_"


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


def entries(folder: Path, pattern: re.Pattern | None = None) -> list[Entry]:
    """The submissions in ``folder``, one per student; raises BatchError on names the pattern does not match or
    on two submissions of one student."""
    if not folder.is_dir():
        raise BatchError(f"{folder}: not a folder of submissions")
    found, unmatched, by_name = [], [], {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name in JUNK:
            continue
        student = student_of(path.name, pattern)
        if not student:
            unmatched.append(path.name)
            continue
        entry = Entry(student, path)
        by_name.setdefault(entry.file_name, []).append(path.name)
        found.append(entry)
    if unmatched:
        raise BatchError(f"--student-pattern matches no student in {len(unmatched)} name(s), e.g. "
                         f"{', '.join(unmatched[:3])}: fix the pattern, or move those files out of {folder}")
    clashes = [names for names in by_name.values() if len(names) > 1]
    if clashes:
        shown = "; ".join(" and ".join(names) for names in clashes[:3])
        raise BatchError(f"{len(clashes)} student(s) have more than one submission ({shown}): keep one each, or "
                         "give a --student-pattern that tells them apart")
    return found


def summary(student: str, results: dict) -> dict:
    """A grades.csv row: points per problem, total, and the first failure of each problem."""
    row = {"student": student}
    notes: dict[str, list[str]] = {}  # first failure -> the problems it is the first failure of
    for problem in RUNS:
        tests = [t for t in results.get("tests", []) if t["number"].rsplit(".", 1)[0] == problem]
        row[problem] = f"{sum(t['score'] for t in tests):g}"
        failed = [t for t in tests if t["status"] == "failed" and t["max_score"] > 0]
        if failed:
            notes.setdefault((failed[0]["output"].splitlines() or [""])[0][:120], []).append(problem)
    row["total"] = f"{results.get('score', 0):g}"
    row["notes"] = " | ".join(f"{', '.join(problems)}: {note}" for note, problems in notes.items())
    return row


def _cell(value: str) -> str:
    """A CSV cell a spreadsheet shows as text: never a formula (student names and messages come from students)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def write_csv(out: Path, students: list[Entry]) -> int:
    """Rewrite OUT/grades.csv from the results of ``students`` graded so far; returns how many rows."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["student", *RUNS, "total", "notes"], lineterminator="\n")
    writer.writeheader()
    rows = 0
    for entry in sorted(students, key=lambda e: e.student):
        path = out / "results" / f"{entry.file_name}.json"
        if path.is_file():
            writer.writerow({k: _cell(v) for k, v in summary(entry.student, json.loads(path.read_text())).items()})
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
        """Grade one submission; True once its results are in OUT/results."""
        pending = self.out / "pending" / f"{entry.file_name}.json"
        prefix = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []  # dies with us
        with self.lock:
            if self.stopping:
                return False
            proc = subprocess.Popen([*prefix, sys.executable, str(GRADE), str(entry.path), "-o", str(pending),
                                     *self.flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    start_new_session=True)
            self.running.add(proc)
        _, err = proc.communicate()
        with self.lock:
            self.running.discard(proc)
        if proc.returncode not in (0, 1):  # 1: an unreadable submission, with complete results all the same
            if not self.stopping:
                print(f"\n{entry.path.name}: grade.py failed ({err.decode(errors='replace').strip()[-300:]})",
                      file=sys.stderr)
            pending.unlink(missing_ok=True)
            return False
        os.replace(pending, self.out / "results" / f"{entry.file_name}.json")
        return True

    def stop(self, signum, frame) -> None:
        with self.lock:
            self.stopping = True
            for proc in self.running:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)  # grade.py kills its children and removes its folders
                except ProcessLookupError:
                    pass

    def run(self, todo: list[Entry], everyone: list[Entry], progress) -> int:
        """Grade ``todo``; returns how many finished."""
        done = 0
        with ThreadPoolExecutor(self.jobs) as pool:
            futures = [pool.submit(self.grade_one, entry) for entry in todo]
            for future in as_completed(futures):
                if future.result():
                    done += 1
                    write_csv(self.out, everyone)
                progress.update(1)
        return done
