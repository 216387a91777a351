"""Grading a whole class on one machine: a folder of submissions (an LMS export) into results and grades.csv.

Each submission (a ZIP, a folder of loose files or a bare .py directly in the folder) is graded by its own
``python -m grading grade`` process, ``jobs`` at a time, each with its own sandboxed children. A student's results.json lands in
OUT/results/<student>.json once its grading has ended, and grades.csv is rewritten (atomically) after each one.
A grading that failed (its exit status other than 0 and 1) is recorded as "needs attention", with no score.
Rerun the same command and it grades only what is not up to date: students without results, gradings that
failed, submissions that changed (their sha256 is in the results) and results of another grader version. So a
run that is killed loses at most the gradings under way. SIGTERM or SIGINT stops every grading under way and
leaves no process behind.
"""
from __future__ import annotations

import csv
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

from grading.grade import PARENT_PID
from grading.scoring import grader_version, submission_hash, unfinished, write_results
from grading.status import GRADED, HELD_BACK, NEEDS_ATTENTION
from grading.submission import RUNS

ROOT = Path(__file__).resolve().parents[1]
GRADE = [sys.executable, "-m", "grading", "grade"]  # run in ROOT, where Python finds this package
JUNK = ("__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini")
COLUMNS = ["student", "name", "late", "status", *RUNS, "total", "notes", "flags", "also submitted"]


class BatchError(ValueError):
    """The folder or the flags cannot be graded as given; the message names the fix."""


# LMS exports, by the names their download code writes.
# Canvas: <name>[_LATE]_<user id>_<number>_<file>, where files of one submission share the number and a newer one has
#   a larger one; anonymous grading writes anon_<anonymous id> in place of name and user id; a text or URL entry is
#   <name>_<user id>_text.html or _link.html. The name is lower-cased and may hold underscores (never "_<digits>_").
# Moodle: <Full Name>_<participant id>_assign<submission|feedback>_<plugin>_[<file>], a folder per student and plugin
#   when downloaded in folders; team members each get their own copy, the team's name before the member's.
# Blackboard: <assignment>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>[_<file>], beside an attempt receipt (.txt).
PRESETS = {
    "canvas": re.compile(r"^(?:anon_(?P<anon>[A-Za-z0-9]+)|(?P<name>.*?)_(?:(?P<late>late)_)?(?P<student>\d+))_"
                         r"(?:(?P<late2>late)_)?(?:(?P<order>\d+)_(?P<file>.+)|(?P<entry>text|link)\.html)$",
                         re.IGNORECASE),
    "moodle": re.compile(r"^(?P<name>.+?)_(?P<student>\d+)_assign(?P<plugin>submission|feedback)_(?P<type>[a-z]+)_"
                         r"(?P<file>.*)$"),
    "blackboard": re.compile(r"^(?P<stem>.+?)_attempt_(?P<order>\d{4}(?:-\d\d){5})(?:_(?P<file>.+)|\.txt)?$"),
}
DOCUMENTS = (".pdf", ".doc", ".docx", ".odt", ".rtf", ".txt", ".md", ".html", ".htm", ".tex", ".png", ".jpg",
             ".jpeg", ".gif", ".csv", ".json", ".yml", ".yaml")  # handed in beside the code, never graded


@dataclass(frozen=True)
class Entry:
    """One student's submission: the files of their newest attempt that hold code (graded together), with what else
    they handed in."""
    student: str  # the key: the LMS's user id with a preset, else the pattern's group or the name
    path: Path  # the submission's file or folder; with several (``parts``), the first of them
    name: str = ""  # the student's name as the LMS writes it
    late: bool = False
    order: tuple = ()  # a newer submission of the same student sorts later
    others: tuple[str, ...] = ()  # the student's other attempts, not graded
    # with several files holding code in one attempt: (name in the export, name in the submission) of each, graded
    # together as one folder
    parts: tuple[tuple[str, str], ...] = ()
    ignored: tuple[str, ...] = ()  # what else the student handed in: documents, text entries (never graded)
    no_code: bool = False  # nothing handed in may be code (only documents, a text entry): for a human

    @property
    def files(self) -> list[Path]:
        return [self.path.parent / name for name, _ in self.parts] or [self.path]

    def sha256(self) -> str:
        """The submission's hash: of its one file or folder, or of its parts' names and hashes."""
        if not self.parts:
            return submission_hash(self.path)
        digest = hashlib.sha256()
        for name, staged in self.parts:
            digest.update(f"{staged}\0{submission_hash(self.path.parent / name)}\0".encode())
        return digest.hexdigest()

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


def _holds_code(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() not in DOCUMENTS


@dataclass
class _Part:
    path: Path
    student: str
    name: str
    attempt: tuple  # the files of one attempt share it; a newer attempt sorts later
    file: str  # its name in the submission
    kind: str = "code"  # or what it is, when it is not graded: "a document", "a text entry", "a receipt"
    late: bool = False


def _part(path: Path, pattern: re.Pattern | None, lms: str | None, usernames: dict[str, str]) -> _Part | None:
    """What the export's file ``path`` is: whose, of which attempt, under which name; None if the names of the
    preset or pattern do not match it."""
    match = pattern.search(path.name) if pattern else None
    if pattern is not None and not match:
        return None
    kind = "code" if _holds_code(path) else "a document"
    if lms == "canvas":
        student = f"anon_{match['anon']}" if match["anon"] else match["student"]
        if match["entry"]:
            kind = f"a {'text' if match['entry'].lower() == 'text' else 'URL'} entry"
            return _Part(path, student, match["name"] or student, (-1,), f"{match['entry'].lower()}.html", kind)
        return _Part(path, student, match["name"] or student, (int(match["order"] or -1),),
                     match["file"] or path.name, kind, bool(match["late"] or match["late2"]))
    if lms == "moodle":
        if match["plugin"] == "feedback":
            kind = "feedback"
        elif match["type"] != "file":
            kind = "an online text entry" if match["type"] == "onlinetext" else f"a {match['type']} entry"
        return _Part(path, match["student"], match["name"], (), match["file"] or match["type"], kind)
    if lms == "blackboard":
        student = usernames.get(path.name) or match["stem"].rsplit("_", 1)[-1]
        if not match["file"]:
            kind = "a receipt"
        return _Part(path, student, student, (match["order"],), match["file"] or path.name, kind)
    student = student_of(path.name, pattern)
    if not student:
        return None
    groups = match.groupdict() if match else {}
    order = (int(groups["order"]) if groups["order"].isdigit() else groups["order"],) if groups.get("order") else ()
    return _Part(path, student, groups.get("name") or student, order + (path.stat().st_mtime_ns,), path.name, kind,
                 bool(groups.get("late")))


_RECEIPT_NAME = re.compile(r"^Name:\s*(?P<name>.*?)\s*\((?P<username>[^()\s]+)\)\s*$", flags=re.M)


def _blackboard_usernames(folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """({file name: username}, {username: full name}) of a Blackboard export. Its names are
    <assignment>_<username>_attempt_<time>, and both the assignment and the username may hold underscores: the
    assignment is what every name of the export begins with; with one student only, the attempt receipt's
    "Name: <full name> (username)" line says where it ends."""
    attempt = PRESETS["blackboard"]
    stems = {p.name: m["stem"] for p in folder.iterdir() if (m := attempt.match(p.name))}
    receipts, full_names = {}, {}
    for path in folder.glob("*_attempt_*.txt"):
        try:
            if (m := attempt.match(path.name)) and not m["file"]:
                if found := _RECEIPT_NAME.search(path.read_text(errors="replace")[:4096]):
                    receipts[m["stem"]] = found["username"]
                    full_names[found["username"]] = found["name"]
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
    return names, full_names


def entries(folder: Path, pattern: re.Pattern | None = None, lms: str | None = None,
            unmatched: list[str] | None = None) -> list[Entry]:
    """The submissions in ``folder``, one per student: the export's files grouped by student and attempt (``lms``
    names a preset of PRESETS, in place of a pattern). The newest attempt that holds code is graded, all its files
    that may be code together; other attempts are listed in ``others``, documents and text entries in ``ignored``.
    Names that match no student are appended to ``unmatched`` (if given; else they raise BatchError); BatchError
    also when no name matches at all."""
    if not folder.is_dir():
        raise BatchError(f"{folder}: not a folder of submissions")
    if lms:
        pattern = PRESETS[lms]
    usernames, full_names = _blackboard_usernames(folder) if lms == "blackboard" else ({}, {})
    found: dict[str, list[_Part]] = {}
    missed = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name in JUNK:
            continue
        part = _part(path, pattern, lms, usernames)
        if part is not None and part.student in full_names:
            part.name = full_names[part.student][:200]
        if part is None:
            missed.append(path.name)
        else:
            found.setdefault(part.student, []).append(part)
    if missed and (unmatched is None or not found):
        raise BatchError(f"{'--lms ' + lms if lms else '--student-pattern'} matches no student in {len(missed)} "
                         f"name(s), e.g. {', '.join(missed[:3])}: fix the pattern, or move those files out of "
                         f"{folder}")
    if unmatched is not None:
        unmatched.extend(missed)
    return sorted((_submission(parts) for parts in found.values()), key=lambda e: e.student)


def _submission(parts: list[_Part]) -> Entry:
    """One student's Entry from their files: the newest attempt that holds code (else the newest)."""
    attempts: dict[tuple, list[_Part]] = {}
    for part in parts:
        if part.kind != "feedback":
            attempts.setdefault(part.attempt, []).append(part)
    order = sorted(attempts) or [parts[0].attempt]
    with_code = [a for a in order if any(p.kind == "code" for p in attempts[a])]
    chosen = with_code[-1] if with_code else order[-1]
    mine = attempts.get(chosen, parts)
    code = [p for p in mine if p.kind == "code"]
    shown = code or [p for p in mine if p.kind != "a receipt"] or mine
    others = tuple(p.path.name for a in order if a != chosen for p in attempts[a] if p.kind == "code")
    ignored = tuple(f"{p.file} ({p.kind})" for a in order for p in attempts[a] if p.kind not in ("code", "a receipt"))
    staged: list[tuple[str, str]] = []
    if len(code) > 1:
        taken: set[str] = set()
        for p in code:
            name, n = p.file, 1
            while name.lower() in taken:  # the same name twice: keep both
                n += 1
                stem, dot, suffix = p.file.rpartition(".")
                name = f"{stem}-{n}.{suffix}" if dot and stem else f"{p.file}-{n}"
            taken.add(name.lower())
            staged.append((p.path.name, name))
    first = shown[0]
    return Entry(first.student, first.path, first.name, any(p.late for p in mine), chosen, others, tuple(staged),
                 ignored, not code)


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
           "status": status(results), "also submitted": "; ".join(entry.others + entry.ignored)}
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
            and (not all(p.exists() for p in entry.files) or extra.get("submission_sha256") == entry.sha256()))


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


def no_code(entry: Entry) -> str:
    return (f"no code in the submission, only {', '.join(entry.ignored[:4]) or entry.path.name}: read it (code may "
            "be pasted in it), or ask for an upload of hw3.zip")


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:  # another file system
        shutil.copy2(source, target, follow_symlinks=False)


def stage(entry: Entry, folder: Path) -> None:
    """Lay out the files of a submission of several parts as one folder, each under its name in the submission
    (hard links where the file system allows; symbolic links stay links, which the reader never follows)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, staged in entry.parts:
        source = entry.path.parent / name
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(source, folder / staged, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(source), str(folder / staged))


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
        pending = self.out.resolve() / "pending" / f"{entry.file_name}.json"
        work = pending.with_suffix(".work")  # gan.py and grids, for the class report
        results = self.out / "results" / f"{entry.file_name}.json"
        if entry.no_code:  # a text entry, a PDF: nothing a rule may score, and perhaps code pasted in it
            print(f"\n{entry.path.name}: needs a human: {no_code(entry)}", file=sys.stderr)
            content = unfinished(no_code(entry))
            content["extra_data"].update(status=NEEDS_ATTENTION, unreadable=no_code(entry)[:300],
                                         submission_sha256=entry.sha256())
            write_results(content, results)
            return False
        upload = pending.with_suffix(".upload")  # several files of one attempt, as one folder
        prefix = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []  # dies with us
        try:
            if entry.parts:
                stage(entry, upload)
        except OSError as error:  # a full disk: the grading failed, not the student
            shutil.rmtree(upload, ignore_errors=True)
            print(f"\n{entry.path.name}: the grading failed (laying out its files: {error})", file=sys.stderr)
            write_results(unfinished(f"the grading failed (laying out the submission's files: {error})"), results)
            return False
        try:
            with self.lock:
                if self.stopping:
                    return False
                proc = subprocess.Popen([*prefix, *GRADE, str(upload if entry.parts else entry.path.resolve()),
                                         "-o", str(pending), "--keep", str(work), *self.flags], cwd=ROOT,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                                        env={**os.environ, PARENT_PID: str(os.getpid())})
                self.running.add(proc)
            _, err = proc.communicate()
        finally:
            shutil.rmtree(upload, ignore_errors=True)
        with self.lock:
            self.running.discard(proc)
        if self.stopping:
            pending.unlink(missing_ok=True)
            shutil.rmtree(work, ignore_errors=True)
            return False
        try:  # 1: an unreadable submission, graded all the same; anything else, or a placeholder, is a failure
            content = json.loads(pending.read_text())
            graded = proc.returncode in (0, 1) and content["extra_data"]["status"] == GRADED
            if entry.parts:  # the hash of what the export holds, not of the folder it was graded as
                content["extra_data"]["submission_sha256"] = entry.sha256()
                write_results(content, pending)
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
                    os.killpg(proc.pid, signal.SIGTERM)  # the grading kills its children, removes its folders
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
