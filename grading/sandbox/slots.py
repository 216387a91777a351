"""Dedicated uids for grading children, and each child's private folder.

A slot is a uid of ``uid_range()`` that the grader owns: no account's or group's (NSS: files, LDAP, ...), in no
subordinate-uid range (/etc/subuid, /etc/subgid), held by an flock on a file in root's /run/grade-uids that
student code can neither take nor release. The default range, 2,000,000,000 to 2,000,000,255, lies where
systemd promises nothing is allocated (above the container ranges, below the foreign-uid range); GRADE_UIDS=FIRST-LAST
chooses another. Before a slot is used, and after, everything of its uid is removed: its processes, its cgroups,
its folder, its files in the shared temporary folders, its IPC objects and its keyrings, so a grader killed with
SIGKILL leaves nothing that the next grading would meet (``reap_stale`` cleans every slot that a grader once held
and none holds now). A slot that cannot be cleaned is set aside with a warning and the next one is taken.

A child's folder is made inside the jail when there is one. It is root's, of the uid's group and mode 770: the
child writes in it but can neither open it to others nor change its mode, and no other uid enters it.
"""
from __future__ import annotations

import fcntl
import grp
import os
import pwd
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from grading.sandbox import cleanup, jail
from grading.sandbox.cgroups import Cgroup, remove_cgroup

CHILD = Path(__file__).resolve().parents[1] / "child"  # what a child needs of the grader: never checks.py
DEFAULT_UIDS = (2_000_000_000, 2_000_000_255)
STALE_CGROUP_SECONDS = 60  # a process-mode cgroup this old and empty: a killed grader's, or one about to be removed
_UID_LOCKS = Path("/run/grade-uids")  # root's alone
SUBORDINATE = ("/etc/subuid", "/etc/subgid")  # uid and gid ranges given to accounts (containers, rootless tools)
LIVE_UIDS: set[int] = set()  # the slots this process holds now


class NoSlot(RuntimeError):
    """Every uid is held by another grading, or set aside."""


def uid_range() -> range:
    """The uids slots come from: GRADE_UIDS=FIRST-LAST, else DEFAULT_UIDS. ValueError for a malformed setting."""
    text = os.environ.get("GRADE_UIDS", "")
    if not text:
        return range(DEFAULT_UIDS[0], DEFAULT_UIDS[1] + 1)
    try:
        first, last = (int(part) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"GRADE_UIDS={text!r}: expected FIRST-LAST, e.g. 2000000000-2000000255") from None
    if not 1000 <= first <= last < 2 ** 31:
        raise ValueError(f"GRADE_UIDS={text!r}: expected 1000 <= FIRST <= LAST < 2**31")
    return range(first, last + 1)


def _subordinate() -> list[range]:
    """The subordinate uid and gid ranges given to accounts (/etc/subuid, /etc/subgid)."""
    found = []
    for table in SUBORDINATE:
        try:
            lines = Path(table).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                found.append(range(int(parts[1]), int(parts[1]) + int(parts[2])))
    return found


def owned(uid: int) -> bool:
    """Whether ``uid`` may be a slot: in the range, no account's or group's, in no subordinate range."""
    if uid not in uid_range() or any(uid in taken for taken in _subordinate()):
        return False
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return False
        except KeyError:
            pass
    return True


def locks_folder() -> Path:
    """Where the slots' lock files are: root's /run/grade-uids (another user's: a private temporary folder)."""
    locks = _UID_LOCKS if os.access(_UID_LOCKS.parent, os.W_OK) else Path(tempfile.gettempdir(), "grade-uids")
    locks.mkdir(mode=0o700, exist_ok=True)
    info = locks.lstat()
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise NoSlot(f"{locks} is not this user's alone: remove it")
    return locks


def box_folder(uid: int) -> Path:
    """Where the child of ``uid`` gets its folder: inside the jail where there is one."""
    root = jail.ready()
    return (root / "work" if root else jail.STATE / "boxes") / str(uid)


@contextmanager
def uid_slot():
    """A uid of the range that no account and no other grading uses, held (an flock on a file of root's) until
    its child and everything the child left are gone. Whatever a killed earlier holder left of it is removed
    first; a uid whose leftovers cannot be removed is set aside (a warning) for the next one. The lock is
    released when this process ends, however it ends. Raises NoSlot if none is free."""
    locks = locks_folder()
    aside = []
    for uid in uid_range():
        if not owned(uid):
            continue
        hold = open(locks / str(uid), "a")
        try:
            fcntl.flock(hold, fcntl.LOCK_EX | fcntl.LOCK_NB)  # per open file: threads of one grader exclude too
        except OSError:
            hold.close()
            continue
        LIVE_UIDS.add(uid)
        try:
            try:
                clean_slot(uid)
            except (cleanup.CleanupFailed, OSError) as error:
                aside.append(uid)
                print(f"warning: uid {uid} is set aside: {error}", file=sys.stderr)
                continue
            yield uid
            clean_slot(uid)
        finally:
            LIVE_UIDS.discard(uid)
            hold.close()
        return
    raise NoSlot(f"no uid of {uid_range().start}-{uid_range().stop - 1} is free" +
                 (f" ({len(aside)} set aside: what earlier gradings left cannot be removed)" if aside else "") +
                 ": set GRADE_UIDS=FIRST-LAST to a range no account uses")


def clean_slot(uid: int) -> None:
    """Remove everything of the slot ``uid``: its processes, cgroups, folder, files, IPC objects and keyrings.
    Refuses (CleanupFailed) a uid the grader does not own."""
    if not owned(uid):
        raise cleanup.CleanupFailed(f"uid {uid} is not the grader's (an account, a group or a subordinate range)")
    cleanup.kill_uid(uid)
    for root in set(Cgroup.roots().values()):
        for stale in root.glob(f"grade-{uid}-*"):
            remove_cgroup(stale)
    boxes = [box for box in (jail.STATE / "boxes" / str(uid), *(p / "work" / str(uid) for p in jail.all_jails()))
             if box.is_dir()]
    cleanup.remove_as(uid, tuple(map(str, boxes)), span=uid_range())
    for box in boxes:
        box.rmdir()  # empty now; OSError if not


def reap_stale() -> list[str]:
    """Clean every slot that a grader once held (its lock file exists), that no grader holds now, and that still
    has processes, a folder or cgroups (its grader was killed). Returns a warning for each slot set aside."""
    locks = locks_folder()
    span = uid_range()
    candidates = {int(p.name) for p in locks.iterdir() if p.name.isdigit() and int(p.name) in span}
    stale = cleanup.uids_with_processes(candidates)
    for folder in (jail.STATE / "boxes", *(p / "work" for p in jail.all_jails())):
        if folder.is_dir():
            stale.update(int(p.name) for p in folder.iterdir() if p.name.isdigit() and int(p.name) in candidates)
    for root in set(Cgroup.roots().values()):
        for path in root.glob("grade-*-*"):
            tag = path.name.split("-")[1]
            if tag.isdigit() and int(tag) in candidates:
                stale.add(int(tag))
            elif tag == "p":  # a process-mode child's, of any grader: only an empty one, and not one just made (its
                try:     # child joins it a moment later) but one a killed grader left
                    if time.time() - path.stat().st_mtime > STALE_CGROUP_SECONDS:
                        path.rmdir()
                except OSError:
                    pass
    warnings = []
    for uid in sorted(stale):
        if not owned(uid):
            continue
        with open(locks / str(uid), "a") as hold:
            try:
                fcntl.flock(hold, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # held: a grading under way
            LIVE_UIDS.add(uid)
            try:
                clean_slot(uid)
            except (cleanup.CleanupFailed, OSError) as error:
                warnings.append(f"uid {uid} is set aside: {error}")
            finally:
                LIVE_UIDS.discard(uid)
    return warnings


@contextmanager
def child_box(mode: str, files: dict[str, bytes]):
    """(folder, uid) of one child: its files (``files`` and, in bwrap and user modes, grader/), private from the
    moment it exists. In bwrap mode as root and in user mode, under a uid slot; the folder and all the child
    left are removed afterwards (CleanupFailed if they cannot be)."""
    slots = mode == "user" or (mode == "bwrap" and os.geteuid() == 0)
    if not slots:  # the grader's own user: a temporary folder, mode 700 from its creation
        box = Path(tempfile.mkdtemp(prefix="grade-"))
        try:
            write_box(box, files, with_grader=mode == "bwrap")
            yield box, None
        finally:
            if cleanup.remove_tree(str(box)):
                raise cleanup.CleanupFailed(f"{box} could not be removed")
        return
    with uid_slot() as uid:
        box = box_folder(uid)
        box.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        box.mkdir(mode=0o700)
        try:
            write_box(box, files, with_grader=True)
            _hand_over(box, uid)
            yield box, uid
        finally:
            cleanup.kill_uid(uid)
            cleanup.remove_as(uid, (str(box),), span=uid_range())
            try:
                box.rmdir()
            except FileNotFoundError:
                pass  # removed by stop(), which is ending this grader


def write_box(box: Path, files: dict[str, bytes], with_grader: bool) -> None:
    """``files`` (relative name -> content) into ``box``, and the child's grader files into box/grader."""
    for name, content in files.items():
        (box / name).parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        (box / name).write_bytes(content)
    if with_grader:
        (box / "grader").mkdir(mode=0o755)
        for path in sorted(CHILD.glob("*.py")):
            shutil.copyfile(path, box / "grader" / path.name)


def _hand_over(box: Path, uid: int) -> None:
    """Everything in the child's folder to its uid, so that the cleanup, run as that uid, can remove it; the folder
    itself stays root's, of the uid's group, mode 770: the child cannot open it to other uids."""
    for folder, folders, files in os.walk(box):
        for name in [*folders, *files]:
            os.lchown(os.path.join(folder, name), uid, uid)
    os.chown(box, 0, uid)
    os.chmod(box, 0o770)
