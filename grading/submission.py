"""Reading a submission: the allowlisted files of a student's ZIP, or of a folder of loose files, in memory.

Only ``codebase/gan.py`` and ``out_<run>/fake_<step>.png`` are used, with caps on the member count and sizes;
symbolic links, encrypted, duplicate, absolute and ``..`` members are rejected, and nothing is written to disk.
Honest layouts are read as meant: one enclosing folder (``hw3/codebase/gan.py``), Windows backslash separators,
and OS junk (``__MACOSX/``, ``.DS_Store``) skipped. ``check_grid`` judges a run's final sample grid.
"""
from __future__ import annotations

import io
import os
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

GAN = "codebase/gan.py"
RUNS = {"1.2": "out_nonsaturating", "3.2": "out_nonsaturating_conditional", "4.5": "out_wasserstein_gp"}
_GRID = re.compile(r"(out_\w+)/fake_(\d{1,9})\.png")
GRID_PIXELS = (28, 2048)  # smallest and largest sane width or height
MAX_ZIP_BYTES = 32 << 20
MAX_MEMBERS = 64
MAX_GAN_BYTES = 512 << 10
MAX_PNG_BYTES = 8 << 20


@dataclass
class Submission:
    members: dict[str, bytes | str] = field(default_factory=dict)  # allowlisted name -> content, or why rejected
    notes: list[str] = field(default_factory=list)  # about the ZIP as a whole and members outside the allowlist
    fatal: str | None = None  # why nothing of the submission was graded

    def grid(self, run: str) -> tuple[str, bytes | str] | None:
        """(name, content or rejection) of the run's final grid, the one with the highest step."""
        names = [n for n in self.members if (m := _GRID.fullmatch(n)) and m[1] == run]
        if not names:
            return None
        name = max(names, key=lambda n: int(_GRID.fullmatch(n)[2]))
        return name, self.members[name]


def _is_junk(name: str) -> bool:
    """Files that archivers and operating systems add on their own (macOS resource forks, Finder and Explorer
    metadata): never graded, never reported."""
    parts = name.split("/")
    return parts[0] == "__MACOSX" or parts[-1] in (".DS_Store", "Thumbs.db", "desktop.ini") or \
        parts[-1].startswith("._")


def _common_prefix(names: list[str]) -> str:
    """The folder the submission sits in when it was zipped with its folder ("hw3/codebase/gan.py", as the starter
    unzips and as macOS's Compress writes): the one prefix before codebase/gan.py, or "" if there is none."""
    if GAN in names:
        return ""
    prefixes = {n[: -len(GAN)] for n in names if n.endswith("/" + GAN)}
    if len(prefixes) != 1:
        return ""
    prefix = prefixes.pop()
    return prefix if prefix.count("/") == 1 else ""


def read_submission(path: Path) -> Submission:
    """The allowlisted members of the ZIP (or folder of loose files) at ``path``; reading never writes to disk.

    Windows backslash separators are read as folders, one enclosing folder is looked through, and OS junk
    (``__MACOSX/``, ``.DS_Store``) is skipped."""
    if Path(path).is_dir():
        return read_folder(Path(path))
    sub = Submission()
    try:
        size = os.stat(path).st_size
        if size > MAX_ZIP_BYTES:
            sub.fatal = f"the ZIP is {size} bytes, over the {MAX_ZIP_BYTES} byte limit: not graded"
            return sub
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not _is_junk(i.filename.replace("\\", "/"))]
            if len(infos) > MAX_MEMBERS:
                sub.fatal = (f"the ZIP has {len(infos)} files and folders, over the limit of {MAX_MEMBERS}: not "
                             f"graded. Build it with make_submission.sh, which holds only what is graded")
                return sub
            prefix = _common_prefix([i.filename.replace("\\", "/") for i in infos])
            counts: dict[str, int] = {}
            for info in infos:
                counts[info.filename] = counts.get(info.filename, 0) + 1
            for info in infos:
                _read_member(zf, info, counts[info.filename], sub, prefix)
    except (OSError, zipfile.BadZipFile, ValueError, RuntimeError, EOFError) as error:
        sub.fatal = f"cannot read the submission as a ZIP ({type(error).__name__}: {error})"
    return sub


def read_folder(folder: Path) -> Submission:
    """The allowlisted files of a folder of loose files (Gradescope unpacks an uploaded ZIP into one), with the
    same caps as a ZIP; symbolic links and special files are rejected."""
    sub = Submission()
    names = []
    for root, dirs, files in os.walk(folder):  # os.walk does not follow symbolic links to folders
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            rel = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if not _is_junk(rel):
                names.append(rel)
        if len(names) > MAX_MEMBERS:
            sub.fatal = f"the submission has over {MAX_MEMBERS} files, over the limit: not graded"
            return sub
    prefix = _common_prefix(names)
    for rel in names:
        name = rel[len(prefix):] if prefix and rel.startswith(prefix) else rel
        allowed = name == GAN or bool(_GRID.fullmatch(name))
        path = folder / rel
        if not allowed:
            sub.notes.append(f"ignored {rel!r}: only {GAN} and out_<run>/fake_<step>.png are graded")
            continue
        info = os.lstat(path)
        cap = MAX_GAN_BYTES if name == GAN else MAX_PNG_BYTES
        if not stat.S_ISREG(info.st_mode):
            reason = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        elif info.st_size > cap:
            reason = f"{info.st_size} bytes, over the {cap} byte limit"
        else:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                sub.members[name] = f.read(cap + 1)[: cap + 1]
            continue
        sub.members[name] = f"rejected: {reason}"
        sub.notes.append(f"rejected {rel!r}: {reason}")
    return sub


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, count: int, sub: Submission, prefix: str = "") -> None:
    raw = info.filename
    name = raw.replace("\\", "/")
    if prefix and name.startswith(prefix):
        name = name[len(prefix):]
    allowed = name == GAN or bool(_GRID.fullmatch(name))
    if name.endswith("/") and not allowed:
        return  # a folder entry
    parts = name.split("/")
    kind = (info.external_attr >> 16) & 0o170000
    if raw.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", raw) or ".." in parts or "\0" in raw:
        reason = "unsafe name (absolute, or with ..)"
    elif count > 1:
        reason = f"appears {count} times"
    elif kind == stat.S_IFLNK:
        reason = "a symbolic link"
    elif kind not in (0, stat.S_IFREG):
        reason = "not a regular file"
    elif info.flag_bits & 0x1:
        reason = "encrypted"
    elif not allowed:
        sub.notes.append(f"ignored {name!r}: only {GAN} and out_<run>/fake_<step>.png are graded")
        return
    else:
        cap = MAX_GAN_BYTES if name == GAN else MAX_PNG_BYTES
        reason = _content(zf, info, cap)
    if isinstance(reason, bytes):
        sub.members[name] = reason
        return
    if allowed:
        sub.members[name] = f"rejected: {reason}"
    sub.notes.append(f"rejected {name!r}: {reason}")


def _content(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes | str:
    """The member's bytes, decompressing at most cap + 1 of them, or why they cannot be read."""
    if info.file_size > cap:
        return f"{info.file_size} bytes uncompressed, over the {cap} byte limit"
    try:
        with zf.open(info) as member:
            data = member.read(cap + 1)
    except Exception as error:  # noqa: BLE001 - zipfile, zlib, bz2, lzma each raise their own
        return f"unreadable ({type(error).__name__}: {error})"
    return data if len(data) <= cap else f"over the {cap} byte limit once decompressed"


def check_grid(entry: tuple[str, bytes | str] | None, run: str) -> str | None:
    """None if the grid is a valid PNG of sane size, else what is wrong with it."""
    if entry is None:
        return f"no sample grid: expected {run}/fake_<step>.png in the ZIP"
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
