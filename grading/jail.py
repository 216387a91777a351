"""The jail: a folder tree that holds only what a grading child needs, for ``chroot`` (user mode) and as the
source of this Python's files (bubblewrap mode, where the Python lies in a folder other users cannot enter).

It holds hard links, so it costs seconds and almost no disk: the system's libraries (/usr/lib*), setpriv, this
Python's prefixes (packages included), a copy of ld.so.cache and /proc/cpuinfo, the device nodes Python uses,
and ``work/``, where each child's folder is made. Every set-uid or set-gid file, and every file others may write,
is left out; no folder in it is writable by others. Nothing else of the
host (home folders, courses, other gradings, /proc) exists in it. It is built once per Python and set of
installed packages, by root, under STATE (``python grade.py --prepare`` at set-up time; otherwise at the first
grading), and rebuilt when the packages change.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

STATE = Path("/var/lib/grade-sandbox")  # root's, 0711: jails, and the children's folders when there is no jail
_DEVICES = {"null": (1, 3), "zero": (1, 5), "random": (1, 8), "urandom": (1, 9)}


def sources() -> list[Path]:
    """What the jail links from the host: the system's libraries, setpriv, and this Python's trees."""
    found = [Path(p) for p in ("/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libx32") if Path(p).is_dir()]
    found.append(Path(shutil.which("setpriv") or "/usr/bin/setpriv"))
    found.append(Path(os.path.realpath(sys.executable)))
    for prefix in {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}:
        if not prefix.startswith("/usr/lib") and prefix != "/usr":
            found.append(Path(prefix))
    if os.path.realpath(sys.base_prefix) == "/usr":  # Debian's Python: its standard library is under /usr/lib
        found.append(Path(sysconfig.get_paths()["stdlib"]))
    found = [p for p in dict.fromkeys(found) if p.exists()]
    return [p for p in found if not any(other in p.parents for other in found)]  # each tree once


def _fingerprint() -> str:
    """Changes when this Python, its installed packages (an install touches site-packages) or this file change."""
    parts = [sys.version, *map(str, sources()), hashlib.sha256(Path(__file__).read_bytes()).hexdigest()]
    for key in ("purelib", "platlib"):
        path = Path(sysconfig.get_paths()[key])
        if path.is_dir():
            parts.append(f"{path}:{path.stat().st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def path() -> Path:
    return STATE / f"jail-{_fingerprint()}"


def disabled() -> bool:
    """GRADE_JAIL=off: run user mode without the jail, as where none can be built (for tests and comparisons)."""
    return os.environ.get("GRADE_JAIL") == "off"


def ready() -> Path | None:
    """The jail of this Python if it is built (and not disabled), else None."""
    if disabled():
        return None
    jail = path()
    return jail if (jail / ".complete").is_file() else None


def prepare() -> Path:
    """Build the jail of this Python unless it exists (root only); remove older ones. Raises OSError, with the
    reason, where it cannot be built (e.g. the Python lies on another filesystem than STATE: hard links fail)."""
    if disabled():
        raise OSError("the jail is disabled (GRADE_JAIL=off)")
    if jail := ready():
        return jail
    STATE.mkdir(mode=0o711, parents=True, exist_ok=True)
    os.chmod(STATE, 0o711)
    with open(STATE / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if jail := ready():
            return jail
        jail = path()
        building = jail.with_name(jail.name + ".building")
        for old in STATE.glob("jail-*"):
            if not (old / "work").is_dir() or not any((old / "work").iterdir()):  # no child's folder in it
                shutil.rmtree(old, ignore_errors=True)  # root's trees of hard links, of bounded depth
        building.mkdir(mode=0o755)
        for source in sources():
            target = building / source.relative_to("/")
            _mkdirs(building, target.parent)
            copy = subprocess.run(["cp", "-al", "--no-preserve=ownership", str(source), str(target)],
                                  capture_output=True, text=True)
            if copy.returncode:
                shutil.rmtree(building, ignore_errors=True)
                raise OSError(f"cannot link {source} into {building}: {copy.stderr.strip()}")
        for top in ("bin", "lib", "lib64", "lib32", "sbin"):
            if os.path.islink(f"/{top}") and (building / os.readlink(f"/{top}")).exists():
                os.symlink(os.readlink(f"/{top}"), building / top)
        _drop_unsafe(building)
        for name, target in (("etc/ld.so.cache", "/etc/ld.so.cache"), ("proc/cpuinfo", "/proc/cpuinfo")):
            _mkdirs(building, (building / name).parent)
            try:
                (building / name).write_bytes(Path(target).read_bytes())  # cpuinfo: torch reads it at import
            except OSError:
                pass
        _mkdirs(building, building / "dev")
        for name, (major, minor) in _DEVICES.items():
            try:
                os.mknod(building / "dev" / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
                os.chmod(building / "dev" / name, 0o666)
            except OSError:
                pass  # no CAP_MKNOD: Python does without them
        (building / "work").mkdir(mode=0o711)
        (building / ".complete").write_text("")
        os.rename(building, jail)
        return jail


def _mkdirs(root: Path, folder: Path) -> None:
    """Create ``folder`` and its parents under ``root`` with mode 755 (a parent on the host may be private)."""
    for parent in reversed([folder, *folder.parents]):
        if parent == root or root not in parent.parents:
            continue
        if not parent.exists():
            parent.mkdir(mode=0o755)


def _drop_unsafe(root: Path) -> None:
    """Nothing in the jail may raise privileges or carry anything from one child to the next: set-uid and set-gid
    files and files others may write are left out (they are hard links: changing their mode would change the
    host's), and no folder (a copy) stays writable by others."""
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            info = os.lstat(os.path.join(folder, name))
            if stat.S_ISDIR(info.st_mode) and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                os.chmod(os.path.join(folder, name), stat.S_IMODE(info.st_mode) & ~0o022)
        for name in files:
            info = os.lstat(os.path.join(folder, name))
            unsafe = stat.S_ISUID | stat.S_ISGID | stat.S_IWGRP | stat.S_IWOTH
            if stat.S_ISREG(info.st_mode) and info.st_mode & unsafe:
                os.unlink(os.path.join(folder, name))
