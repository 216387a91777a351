"""The jail: a folder tree that holds only what a grading child needs, for ``chroot`` (user mode) and as the
source of this Python's files (bubblewrap mode, where the Python lies in a folder other users cannot enter).

It holds hard links, so it costs seconds and almost no disk: the system's libraries (/usr/lib*), setpriv, this
Python's prefixes (packages included), a copy of ld.so.cache and /proc/cpuinfo, the device nodes Python uses,
and ``work/``, where each child's folder is made. Every set-uid or set-gid file, and every file others may write,
is left out; no folder in it is writable by others. Nothing else of the
host (home folders, courses, other gradings, /proc) exists in it. It is built once per Python and set of
installed packages, by root, under STATE (``python -m grading prepare`` at set-up time; otherwise at the first
grading), in a folder of another name, checked (this Python starts in it and imports torch) and only then renamed
into place, with a manifest that shows a jail removed in part.

Every grader holds its jail with a shared lock for as long as it runs (``hold``); a jail is removed only under an
exclusive lock that no grader holds, renamed away first, so that no grading loses its jail and no half-removed
jail is used. The fingerprint is taken once per process: installing a package during a batch changes the jail of
the gradings that start afterwards only.
"""
from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

STATE = Path("/var/lib/grade-sandbox/v2")  # root's, 0711: jails, their locks, and children's folders when there is no jail
IDLE_SECONDS = 3600.0  # a jail no grader has held for this long is removed by the next build
_DEVICES = {"null": (1, 3), "zero": (1, 5), "random": (1, 8), "urandom": (1, 9)}


def sources() -> list[Path]:
    """What the jail links from the host: the system's libraries, setpriv, and this Python's trees."""
    found = [Path(p) for p in ("/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libx32") if Path(p).is_dir()]
    found.append(Path(shutil.which("setpriv") or "/usr/bin/setpriv"))
    found.append(Path(os.path.realpath("/sbin/ldconfig")))  # ctypes.util.find_library asks it (libseccomp)
    found.append(Path(os.path.realpath(sys.executable)))
    for prefix in {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}:
        if not prefix.startswith("/usr/lib") and prefix != "/usr":
            found.append(Path(prefix))
    if os.path.realpath(sys.base_prefix) == "/usr":  # Debian's Python: its standard library is under /usr/lib
        found.append(Path(sysconfig.get_paths()["stdlib"]))
    found = [p for p in dict.fromkeys(found) if p.exists()]
    return [p for p in found if not any(other in p.parents for other in found)]  # each tree once


_FINGERPRINT: str | None = None  # computed once per process: a change during a batch affects later gradings only
_HELD: dict[Path, object] = {}  # jail -> the open lock file by which this process holds it (shared)


@atexit.register
def _release() -> None:
    """Close the held lock files as this process ends (the lock ends with the process anyway)."""
    for lock in _HELD.values():
        lock.close()
    _HELD.clear()


def _fingerprint() -> str:
    """Changes when this Python, its installed packages (an install touches site-packages) or this file change."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        parts = [sys.version, *map(str, sources()), hashlib.sha256(Path(__file__).read_bytes()).hexdigest()]
        for key in ("purelib", "platlib"):
            path = Path(sysconfig.get_paths()[key])
            if path.is_dir():
                parts.append(f"{path}:{path.stat().st_mtime_ns}")
        _FINGERPRINT = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return _FINGERPRINT


def path() -> Path:
    return STATE / f"jail-{_fingerprint()}"


def all_jails() -> list[Path]:
    """Every complete jail of this layout, of any Python or grader version."""
    return [p for p in STATE.glob("jail-*") if p.is_dir() and not p.name.endswith(".lock")]


def disabled() -> bool:
    """GRADE_JAIL=off: run user mode without the jail, as where none can be built (for tests and comparisons)."""
    return os.environ.get("GRADE_JAIL") == "off"


def ready() -> Path | None:
    """The jail of this Python if this process holds it (``hold``) and it is whole, else None."""
    if disabled():
        return None
    jail = path()
    return jail if jail in _HELD else None


def hold() -> Path | None:
    """Hold the jail of this Python for as long as this process runs (a shared lock: no grader removes it
    meanwhile) if it exists and is whole; else None."""
    if disabled():
        return None
    jail = path()
    if jail in _HELD:
        return jail
    if not STATE.is_dir():
        return None
    lock = _lock(jail, fcntl.LOCK_SH)
    if lock is None:
        return None
    if not whole(jail):
        lock.close()
        return None
    os.utime(lock.fileno())  # when it was last held: an idle jail is removed, one in use is kept
    _HELD[jail] = lock
    return jail


def _lock(jail: Path, how: int):
    """The jail's lock file, open and locked ``how`` (blocking for a shared lock, not for an exclusive one), or
    None; the lock file is checked to be the one at its path after locking (a remover may unlink it)."""
    name = jail.with_name(jail.name + ".lock")
    for _ in range(10):
        try:
            lock = open(name, "a")
        except OSError:
            return None
        try:
            fcntl.flock(lock, how if how == fcntl.LOCK_SH else how | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            return None
        try:
            if os.stat(name).st_ino == os.fstat(lock.fileno()).st_ino:
                return lock
        except FileNotFoundError:
            pass
        lock.close()
    return None


def whole(jail: Path) -> bool:
    """Whether the jail is as it was built: its manifest (the number of entries of its main folders) matches."""
    try:
        manifest = json.loads((jail / ".complete").read_text())
        return all(len(os.listdir(jail / name)) == count for name, count in manifest.items())
    except (OSError, ValueError, TypeError, AttributeError):
        return False


def _manifest(root: Path) -> dict[str, int]:
    """The number of entries of the jail's top, of each folder down to the sources and their children, and of
    site-packages: a jail removed in part, or half built, shows in these."""
    folders = {Path(".")}
    for source in sources():
        relative = source.relative_to("/")
        folders.update(relative.parents)
        if (root / relative).is_dir():
            folders.add(relative)
            folders.update(relative / child for child in os.listdir(root / relative)
                           if (root / relative / child).is_dir() and not (root / relative / child).is_symlink())
    for key in ("purelib", "platlib", "stdlib"):
        folders.add(Path(sysconfig.get_paths()[key]).relative_to("/"))
    return {str(f): len(os.listdir(root / f)) for f in sorted(folders) if (root / f).is_dir()}


def prepare() -> Path:
    """Build the jail of this Python unless it exists, and hold it (root only); remove the jails of other
    versions that no grader holds. Raises OSError, with the reason, where it cannot be built (e.g. the Python
    lies on another filesystem than STATE: hard links fail) or does not work once built."""
    if disabled():
        raise OSError("the jail is disabled (GRADE_JAIL=off)")
    if jail := hold():
        return jail
    STATE.mkdir(mode=0o711, parents=True, exist_ok=True)
    os.chmod(STATE, 0o711)
    with open(STATE / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if jail := hold():
            return jail
        remove_unheld()
        jail = path()
        if jail.exists():  # not whole: removed in part, or changed
            damaged = _lock(jail, fcntl.LOCK_EX)
            if damaged is None:
                raise OSError(f"{jail} is not whole and another grader holds it: stop that grader, then grade again")
            with damaged:
                _remove(jail)
        building = STATE / f".building-{jail.name}"
        _build(building)
        problem = _verify(building)
        if problem:
            _remove(building)
            raise OSError(f"the jail was built but {problem}")
        (building / ".complete").write_text("")  # counted in the manifest of the jail's top
        (building / ".complete").write_text(json.dumps(_manifest(building)))
        os.rename(building, jail)
        if not hold():
            raise OSError(f"the jail {jail} could not be held")
        return jail


def remove_unheld() -> None:
    """Under STATE/.lock: remove what a killed builder or remover left, and every other jail that no grader holds,
    none has held for IDLE_SECONDS, and whose work/ holds no child's folder. A jail is renamed away before it is
    removed, so a half-removed jail never carries a jail's name."""
    for leftover in [*STATE.glob(".building-*"), *STATE.glob(".removing-*")]:
        _remove(leftover)
    for other in all_jails():
        if other == path():
            continue
        try:
            if time.time() - os.stat(other.with_name(other.name + ".lock")).st_mtime < IDLE_SECONDS:
                continue  # held a short while ago: another grader version may well come back to it
        except OSError:
            pass
        lock = _lock(other, fcntl.LOCK_EX)
        if lock is None:
            continue  # held by a grader
        try:
            if (other / "work").is_dir() and any((other / "work").iterdir()):
                continue  # a child's folder: a grading under way, or a slot to reap first
            _remove(other)
            os.unlink(lock.name)
        except OSError:
            pass
        finally:
            lock.close()


def _remove(folder: Path) -> None:
    """Rename ``folder`` away, then remove it (root's trees of hard links, of bounded depth)."""
    doomed = STATE / f".removing-{folder.name.lstrip('.')}-{os.getpid()}"
    try:
        os.rename(folder, doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def _verify(root: Path) -> str:
    """"" if this Python starts in the jail and imports torch, else what went wrong."""
    chroot = shutil.which("chroot", path="/usr/sbin:/sbin:/usr/bin:/bin") or "chroot"
    try:
        run = subprocess.run([chroot, str(root), os.path.realpath(sys.executable), "-I", "-c", "import torch"],
                             capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin"}, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"its Python could not start ({error})"
    if run.returncode:
        return f"its Python cannot import torch ({(run.stderr.strip().splitlines() or ['?'])[-1]})"
    return ""


def _build(building: Path) -> None:
    building.mkdir(mode=0o755)
    for source in sources():
        target = building / source.relative_to("/")
        _mkdirs(building, target.parent)
        copy = subprocess.run(["cp", "-al", "--no-preserve=ownership", str(source), str(target)],
                              capture_output=True, text=True)
        if copy.returncode:
            _remove(building)
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
            unsafe = stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH  # group-writable: a conda Python's files (umask 002)
            if stat.S_ISREG(info.st_mode) and info.st_mode & unsafe:
                os.unlink(os.path.join(folder, name))
