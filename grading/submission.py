"""Reading a submission wherever an honest student put the work, in memory: the one ``gan.py`` and each run's
final sample grid ``out_<run>/fake_<step>.png``.

A submission is a ZIP, a folder of loose files (Gradescope unpacks an upload into one), or a bare ``.py`` file
(an LMS export renames an uploaded gan.py, e.g. ``lee_10070_50070_gan.py``). Inside it the work may lie at any
depth (``hw3_starter/hw3/codebase/gan.py``, a whole work folder with checkpoints) and in ZIPs inside it, down to
MAX_ZIP_DEPTH (a folder holding ``hw3.zip``, a ZIP of ``hw3.zip``, an LMS's folder holding a ZIP of ``hw3.zip``). Names are listed without reading anything (up to MAX_LISTED);
only what is graded is read, each under its size cap, and nothing is written to disk. Reading one upload costs at
most MAX_READ_BYTES decompressed and MAX_READ_SECONDS, one inner ZIP is held in memory at a time, and gan.py
candidates are compared by hash as they are read, so the cost follows the upload, not what it expands to. Several copies of one
``gan.py`` are fine. Of different ones, the starter's unchanged gan.py (all three functions still stubs) is never
chosen; then one at ``codebase/gan.py`` wins over those elsewhere (``old/gan.py``, a backup), and among several
there, the one whose folder also holds the run grids. Where no rule decides, the submission is ``ambiguous``: a
human chooses, naming both. Symbolic links, encrypted, duplicate, absolute
and ``..`` members are never read. ``check_grid`` judges a run's final sample grid.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from PIL import Image

from grading.child.problems import FUNCTIONS

GAN = "codebase/gan.py"
RUNS = {"1.2": "out_nonsaturating", "3.2": "out_nonsaturating_conditional", "4.5": "out_wasserstein_gp"}
_GRID = re.compile(r"(out_\w+)/fake_(\d{1,9})\.png")
_GRID_ANYWHERE = re.compile(r"(?:^|.*/)((out_\w+)/fake_(\d{1,9})\.png)")
GRID_PIXELS = (28, 2048)  # smallest and largest sane width or height
MAX_ZIP_BYTES = 1 << 30  # an upload may hold checkpoints and data: only the graded members are read
MAX_INNER_ZIP_BYTES = 64 << 20  # a ZIP inside the submission is read into memory to look inside
MAX_LISTED = 20_000  # names listed, over every level
MAX_ZIP_DEPTH = 3  # ZIPs inside the upload looked into: a ZIP of hw3.zip inside an LMS's folder is 2 deep
MAX_READ_BYTES = 512 << 20  # decompressed while reading one upload: a whole work folder needs a few MiB
MAX_READ_SECONDS = 60.0
MAX_GAN_BYTES = 512 << 10
MAX_PNG_BYTES = 8 << 20
JUNK = ("__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini")
_CODE = {".py", ".ipynb", ".zip"}
_WRITTEN = {".pdf", ".txt", ".md", ".html", ".htm", ".doc", ".docx", ".odt", ".rtf", ".tex"}  # may hold pasted code


@dataclass
class Submission:
    members: dict[str, bytes | str] = field(default_factory=dict)  # GAN and grid names -> content, or why rejected
    notes: list[str] = field(default_factory=list)  # about the submission as a whole
    fatal: str | None = None  # why nothing of the submission was graded
    where: str = "submission"  # what the messages call it
    listed: list[str] = field(default_factory=list)  # the first names found, for a message when gan.py is missing
    ambiguous: str | None = None  # why no rule could choose the gan.py to grade: for a human
    unreadable: str | None = None  # why the work could not be read at all (with fatal): a new upload is needed

    def grid(self, run: str) -> tuple[str, bytes | str] | None:
        """(name, content or rejection) of the run's final grid, the one with the highest step."""
        names = [n for n in self.members if (m := _GRID.fullmatch(n)) and m[1] == run]
        if not names:
            return None
        name = max(names, key=lambda n: int(_GRID.fullmatch(n)[2]))
        return name, self.members[name]


@dataclass
class _File:
    name: str  # its path in the submission, "/"-separated; "inner.zip!/path" inside a ZIP within it
    read: Callable[[int], bytes | str]  # content up to a cap, or why it cannot be read
    problem: str = ""  # why it must never be read (a symbolic link, an unsafe name, ...)


class _TooMany(Exception):
    pass


def _is_junk(name: str) -> bool:
    """Files that archivers and operating systems add on their own (macOS resource forks, Finder and Explorer
    metadata): never graded, never reported."""
    parts = name.split("/")
    return parts[0] == "__MACOSX" or parts[-1] in JUNK or parts[-1].startswith("._")


class _OverBudget(Exception):
    pass


class _Budget:
    """What reading one upload may cost: MAX_READ_BYTES decompressed, MAX_READ_SECONDS; and the one inner ZIP
    held in memory at a time. Looking inside inner ZIPs may spend all but GRADED_RESERVE of it: past that, further
    inner ZIPs are not opened (and listed as such), and the graded files are still read."""

    GRADED_RESERVE = 64 << 20

    def __init__(self):
        self.left, self.deadline = MAX_READ_BYTES, time.monotonic() + MAX_READ_SECONDS
        self.inner: tuple[str, bytes | str] | None = None  # (its name, its bytes or why not)
        self.floor = 0  # GRADED_RESERVE while an inner ZIP is read to look inside it
        self.unopened: list[str] = []  # inner ZIPs not looked into: the budget was spent
        self.unreadable: list[str] = []  # inner .zip files that are not readable ZIPs (corrupt, truncated)

    def charge(self, size: int) -> None:
        self.left -= size
        if self.left < self.floor or time.monotonic() > self.deadline - (10.0 if self.floor else 0.0):
            raise _OverBudget

    def inner_zip(self, name: str, load: Callable[[], bytes | str]) -> bytes | str:
        """The bytes of the inner ZIP ``name``, loaded by ``load`` unless it is the one held now."""
        if self.inner is None or self.inner[0] != name:
            self.inner = None  # released before the next one is read
            self.inner = (name, load())
        return self.inner[1]


_budget = threading.local()


def read_submission(path: Path) -> Submission:
    """The graded files of the submission at ``path``: a ZIP, a folder, or a bare .py file."""
    path = Path(path)
    sub = Submission(where="ZIP" if path.is_file() and zipfile.is_zipfile(path) else "submission")
    _budget.now = _Budget()
    try:
        if path.is_dir():
            _pick(_list_folder(path), sub)
        elif path.suffix.lower() == ".py" and path.is_file():
            _pick([_File(GAN, lambda cap: _read_path(path, cap))], sub)  # one note below says what was graded
            sub.notes.append(f"graded {path.name} as {GAN}")
        elif (size := os.stat(path).st_size) > MAX_ZIP_BYTES:
            sub.fatal = f"the ZIP is {size} bytes, over the {MAX_ZIP_BYTES} byte limit: not graded"
        else:
            with zipfile.ZipFile(path) as zf:
                _pick(_list_zip(zf, "", 0), sub)
    except _TooMany:
        sub.fatal = f"the submission holds over {MAX_LISTED} files: not graded. Build it with make_submission.sh"
    except _OverBudget:
        sub.fatal = (f"reading the submission took more than {MAX_READ_BYTES >> 20} MiB decompressed or "
                     f"{MAX_READ_SECONDS:g} s (ZIPs inside ZIPs, or many large members): not graded. Submit the "
                     "hw3.zip that make_submission.sh packs")
    except (OSError, zipfile.BadZipFile, ValueError, RuntimeError, EOFError) as error:
        sub.fatal = f"cannot read the submission as a ZIP ({type(error).__name__}: {error})"
    finally:
        _budget.now = None
    return sub


def _pick(files: list[_File], sub: Submission) -> None:
    sub.listed = sorted(f.name for f in files)[:11]
    if unopened := _budget.now.unopened:
        sub.notes.append(f"not looked into: {', '.join(unopened[:5])}{' and more' if len(unopened) > 5 else ''} "
                         f"(ZIPs inside the upload may expand to {MAX_READ_BYTES >> 20} MiB in all)")
    _pick_gan(files, sub)
    _pick_grids(files, sub)
    suffixes = {PurePosixPath(f.name.split("!/")[-1]).suffix.lower() for f in files}
    if GAN not in sub.members and suffixes & _WRITTEN and not suffixes & _CODE:  # a write-up: code may be in it
        shown = ", ".join(sorted(f.name for f in files)[:3])
        sub.unreadable = (f"no code in the {sub.where}, only {shown}: read it (code may be pasted in it), or ask "
                          "for an upload of hw3.zip")
    if (unreadable := _budget.now.unreadable) and GAN not in sub.members:
        sub.unreadable = (f"{', '.join(unreadable[:3])} cannot be read as a ZIP (corrupt or cut short), and no "
                          f"gan.py was found elsewhere")


# ---- Listing -------------------------------------------------------------------------------------------------


def _list_folder(folder: Path) -> list[_File]:
    found: list[_File] = []
    for root, dirs, names in os.walk(folder):  # os.walk does not follow symbolic links to folders
        dirs[:] = [d for d in dirs if not _is_junk(d)]
        for name in names + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = Path(root, name)
            rel = path.relative_to(folder).as_posix()
            if _is_junk(rel):
                continue
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
                found.append(_File(rel, _never, "a symbolic link" if stat.S_ISLNK(info.st_mode) else
                                   "not a regular file"))
            elif name.lower().endswith(".zip") and info.st_size <= MAX_INNER_ZIP_BYTES and zipfile.is_zipfile(path):
                found.extend(_inner_zip(lambda path=path: _read_path(path, MAX_INNER_ZIP_BYTES), rel, len(found)))
            else:
                if name.lower().endswith(".zip") and info.st_size > MAX_INNER_ZIP_BYTES:
                    _budget.now.unopened.append(rel)
                elif name.lower().endswith(".zip"):  # not a ZIP: corrupt, cut short
                    _budget.now.unreadable.append(rel)
                found.append(_File(rel, lambda cap, path=path: _read_path(path, cap)))
            if len(found) > MAX_LISTED:
                raise _TooMany
    return found


def _list_zip(zf: zipfile.ZipFile, prefix: str, listed: int, depth: int = 0,
              reopen: Callable[[], zipfile.ZipFile | str] | None = None) -> list[_File]:
    """The members of an open ZIP, named ``prefix`` + their name, ``depth`` ZIPs deep in the upload; ZIPs in it are
    looked into down to MAX_ZIP_DEPTH. ``reopen`` gives the ZIP again when a member is read later (an inner ZIP is
    not kept open)."""
    infos = zf.infolist()
    if listed + len(infos) > MAX_LISTED:
        raise _TooMany
    counts: dict[str, int] = {}
    for info in infos:
        counts[info.filename] = counts.get(info.filename, 0) + 1
    found: list[_File] = []
    for info in infos:
        raw = info.filename
        name = raw.replace("\\", "/")
        if name.endswith("/") or _is_junk(name):
            continue
        kind = (info.external_attr >> 16) & 0o170000
        problem = ""
        if raw.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", raw) or ".." in name.split("/") or "\0" in raw:
            problem = "unsafe name (absolute, or with ..)"
        elif counts[raw] > 1:
            problem = f"appears {counts[raw]} times"
        elif kind == stat.S_IFLNK:
            problem = "a symbolic link"
        elif kind not in (0, stat.S_IFREG):
            problem = "not a regular file"
        elif info.flag_bits & 0x1:
            problem = "encrypted"
        if not problem and depth < MAX_ZIP_DEPTH and name.lower().endswith(".zip") and (
                info.file_size <= MAX_INNER_ZIP_BYTES):
            if reopen is None:
                load = lambda info=info: _read_member(zf, info, MAX_INNER_ZIP_BYTES)  # noqa: E731
            else:
                load = lambda info=info: _read_reopened(reopen, info, MAX_INNER_ZIP_BYTES)  # noqa: E731
            found.extend(_inner_zip(load, prefix + name, listed + len(found), depth + 1))
            continue
        if reopen is None:
            read = lambda cap, info=info: _read_member(zf, info, cap)  # noqa: E731
        else:
            read = lambda cap, info=info: _read_reopened(reopen, info, cap)  # noqa: E731
        found.append(_File(prefix + name, read, problem))
    return found


def _inner_zip(load: Callable[[], bytes | str], name: str, listed: int, depth: int = 1) -> list[_File]:
    """The members of the ZIP ``name`` inside the submission, whose bytes ``load`` reads. Only one inner ZIP is
    held in memory at a time: a member read later loads its ZIP again (charged to the budget)."""
    def reopen() -> zipfile.ZipFile | str:
        data = _budget.now.inner_zip(name, load)
        return zipfile.ZipFile(io.BytesIO(data)) if isinstance(data, bytes) else data

    budget = _budget.now
    budget.floor = budget.GRADED_RESERVE
    try:
        data = budget.inner_zip(name, load)
    except _OverBudget:
        budget.inner = None
        budget.unopened.append(name)
        return [_File(name, _never, "not opened: reading the upload's ZIPs took its whole budget")]
    finally:
        budget.floor = 0
    if isinstance(data, str):
        return [_File(name, _never, data)]
    if not zipfile.is_zipfile(io.BytesIO(data)):
        if name.lower().endswith(".zip"):
            budget.unreadable.append(name)
        return [_File(name, lambda cap: data if len(data) <= cap else f"over the {cap} byte limit")]
    try:
        return _list_zip(zipfile.ZipFile(io.BytesIO(data)), f"{name}!/", listed, depth, reopen=reopen)
    except (zipfile.BadZipFile, ValueError, RuntimeError, EOFError) as error:
        budget.unreadable.append(name)
        return [_File(name, _never, f"unreadable ZIP ({type(error).__name__})")]


def _read_reopened(reopen: Callable[[], zipfile.ZipFile | str], info: zipfile.ZipInfo, cap: int) -> bytes | str:
    zf = reopen()
    if isinstance(zf, str):
        return zf
    with zf:
        return _read_member(zf, info, cap)


def _never(cap: int) -> str:
    return "not read"


def _read_path(path: Path, cap: int) -> bytes | str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return "not a regular file"
            data = f.read(cap + 1)
    except OSError as error:
        return f"unreadable ({error.strerror})"
    if _budget.now is not None:
        _budget.now.charge(len(data))
    return data if len(data) <= cap else f"over the {cap} byte limit"


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes | str:
    """The member's bytes, decompressing at most cap + 1 of them (charged to the budget as they come), or why
    they cannot be read."""
    if info.file_size > cap:
        return f"{info.file_size} bytes uncompressed, over the {cap} byte limit"
    chunks, size = [], 0
    try:
        with zf.open(info) as member:
            while size <= cap:
                chunk = member.read(min(1 << 20, cap + 1 - size))
                if not chunk:
                    break
                if _budget.now is not None:
                    _budget.now.charge(len(chunk))
                chunks.append(chunk)
                size += len(chunk)
    except _OverBudget:
        raise
    except Exception as error:  # noqa: BLE001 - zipfile, zlib, bz2, lzma each raise their own
        return f"unreadable ({type(error).__name__}: {error})"
    data = b"".join(chunks)
    return data if len(data) <= cap else f"over the {cap} byte limit once decompressed"


# ---- Choosing what is graded -----------------------------------------------------------------------------------


def _pick_gan(files: list[_File], sub: Submission) -> None:
    """The one gan.py: every file of that name, at any depth; copies with the same content count once. Candidates
    are compared by hash as they are read: only the first content is kept."""
    candidates = [f for f in files if PurePosixPath(f.name.split("!/")[-1]).name == "gan.py"]
    if not candidates:
        return
    kept: dict[str, bytes] = {}  # sha256 -> content, for the few different contents (each under MAX_GAN_BYTES)
    names: dict[str, list[str]] = {}  # sha256 -> the names of that content
    rejected = []
    for candidate in candidates:
        content = candidate.problem or candidate.read(MAX_GAN_BYTES)
        if isinstance(content, bytes):
            digest = hashlib.sha256(content).hexdigest()
            names.setdefault(digest, []).append(candidate.name)
            if len(kept) < 4 or digest in kept:
                kept.setdefault(digest, content)
        else:
            rejected.append(f"{candidate.name} ({content})")
    chosen = _choose(names, kept, files, sub)
    if chosen is not None:
        found = names[chosen][0]
        sub.members[GAN] = kept[chosen]
        if not found.endswith(GAN):
            sub.notes.append(f"graded {found} as {GAN}")
    elif len(names) > 1:
        one, two = (group[0] for group in list(names.values())[:2])
        sub.ambiguous = f"two different gan.py files, {one} and {two}, and no rule chooses between them"
        sub.members[GAN] = (f"rejected: two different gan.py files, {one} and {two}: submit one "
                            f"(make_submission.sh packs {GAN})")
    else:
        sub.members[GAN] = f"rejected: {rejected[0]}"
    for reason in rejected if names else []:
        sub.notes.append(f"not graded: {reason}")


def _choose(names: dict[str, list[str]], kept: dict[str, bytes], files: list[_File], sub: Submission) -> str | None:
    """The sha256 of the gan.py to grade among different contents, by the rules of the module's docstring, or None
    when they do not decide. What is left out is noted."""
    if len(names) <= 1:
        return next(iter(names), None)
    work = [d for d in names if d in kept and not _starter_stub(kept[d])]
    for digest in set(names) - set(work):
        if digest in kept and _starter_stub(kept[digest]):
            sub.notes.append(f"not graded: {', '.join(names[digest])} (the starter's gan.py, unchanged)")
    if not work:
        return next(iter(names)) if all(d in kept for d in names) else None
    if len(work) > 1:  # codebase/gan.py over gan.py files elsewhere
        layout = [d for d in work if any(n.endswith(GAN) for n in names[d])]
        work = layout or work
    if len(work) > 1:  # several codebase/gan.py: the one whose project folder holds the grids
        grids = {f.name[:m.start()] for f in files if (m := _GRID_IN_FOLDER.search(f.name))}
        beside = [d for d in work if any(n[:-len(GAN)].rstrip("/") in grids for n in names[d] if n.endswith(GAN))]
        work = beside if len(beside) == 1 else work
    if len(work) > 1 or len(work) + len(set(names) - set(kept)) > 1:
        return None
    for digest in set(names) - {work[0]}:
        if digest in kept and not _starter_stub(kept[digest]):
            sub.notes.append(f"not graded: {', '.join(names[digest])} (another gan.py; graded: {names[work[0]][0]})")
    return work[0]


def _starter_stub(source: bytes) -> bool:
    """Whether a gan.py is the starter's, unchanged: each handout function still only raises NotImplementedError."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    bodies = {node.name: [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
              for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in _HANDOUT_FUNCTIONS}
    return len(bodies) == len(_HANDOUT_FUNCTIONS) and all(  # what follows the raise is never reached
        body and isinstance(body[0], ast.Raise) and "NotImplementedError" in ast.unparse(body[0])
        for body in bodies.values())


_HANDOUT_FUNCTIONS = tuple(FUNCTIONS.values())
_GRID_IN_FOLDER = re.compile(r"/?out_[^/]+/fake_\d+\.png$")  # what precedes it is the project's folder


def _pick_grids(files: list[_File], sub: Submission) -> None:
    """Each run's final grid (highest step), wherever its out_<run>/ folder lies; only those are read."""
    final: dict[str, tuple[int, str, _File]] = {}
    for f in files:
        match = _GRID_ANYWHERE.fullmatch(f.name.split("!/")[-1])
        if match:
            run, step = match[2], int(match[3])
            if run not in final or step > final[run][0]:
                final[run] = (step, match[1], f)
    for run, (_, name, f) in final.items():
        content = f.problem or f.read(MAX_PNG_BYTES)
        sub.members[name] = content if isinstance(content, bytes) else f"rejected: {content}"


def check_grid(entry: tuple[str, bytes | str] | None, run: str, where: str = "submission") -> str | None:
    """None if the grid is a valid PNG of sane size, else what is wrong with it."""
    if entry is None:
        return f"no sample grid: expected {run}/fake_<step>.png in the {where}"
    name, data = entry
    if isinstance(data, str):
        return f"{name}: {data}"
    low, high = GRID_PIXELS
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            width, height = image.size
            if not (low <= width <= high and low <= height <= high):
                return f"{name} is {width}x{height} pixels: expected between {low} and {high} a side"
            image.load()
    except Exception as error:  # noqa: BLE001 - Pillow raises many kinds on broken files
        return f"{name} is not a valid PNG ({type(error).__name__}: {error})"
    return None
