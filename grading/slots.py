"""Dedicated uids for grading children, and each child's private folder.

A slot is a uid from FIRST_UID that no account uses, held by an flock on a file in root's /run/grade-uids (student
code can neither take nor release one). Before a slot is used, and after, everything of its uid is removed: its
processes, its cgroups, its folder, its files in the shared temporary folders and its IPC objects, so a grader
killed with SIGKILL leaves nothing that the next grading would meet (``reap_stale`` cleans every slot no grader
holds). A child's folder is made inside the jail when there is one; it is root's and mode 700 while the grader
writes the student's files into it, then handed to the uid.
"""
from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from grading import cleanup, jail
from grading.cgroups import Cgroup, remove_cgroup

HERE = Path(__file__).resolve().parent
CHILD_FILES = ("harness.py", "probes.py", "wire.py")  # what the child needs of the grader: never checks.py
FIRST_UID = 61000
UID_SLOTS = 256
_UID_LOCKS = Path("/run/grade-uids")  # root's alone
LIVE_UIDS: set[int] = set()  # the slots this process holds now


class NoSlot(RuntimeError):
    """Every uid is held by another grading."""


def _locks() -> Path:
    locks = _UID_LOCKS if os.access(_UID_LOCKS.parent, os.W_OK) else Path(tempfile.gettempdir(), "grade-uids")
    locks.mkdir(mode=0o700, exist_ok=True)
    return locks


def box_folder(uid: int) -> Path:
    """Where the child of ``uid`` gets its folder: inside the jail where there is one."""
    root = jail.ready()
    return (root / "work" if root else jail.STATE / "boxes") / str(uid)


@contextmanager
def uid_slot():
    """A uid no account and no other grading uses, held (an flock on a file of root's) until its child and
    everything the child left are gone. Whatever a killed earlier holder left of it (processes, its folder,
    files, IPC objects, cgroups) is removed first. The lock is released when this process ends, however it ends.
    Raises CleanupFailed if the uid's leftovers cannot be removed."""
    locks = _locks()
    for uid in range(FIRST_UID, FIRST_UID + UID_SLOTS):
        try:
            pwd.getpwuid(uid)
            continue  # an account's uid
        except KeyError:
            pass
        hold = open(locks / str(uid), "a")
        try:
            fcntl.flock(hold, fcntl.LOCK_EX | fcntl.LOCK_NB)  # per open file: threads of one grader exclude too
        except OSError:
            hold.close()
            continue
        LIVE_UIDS.add(uid)
        try:
            _clean_slot(uid)
            yield uid
            _clean_slot(uid)
        finally:
            LIVE_UIDS.discard(uid)
            hold.close()
        return
    raise NoSlot(f"all {UID_SLOTS} uids from {FIRST_UID} are in use by other gradings")


def _clean_slot(uid: int) -> None:
    """Remove everything of ``uid``: its processes, its cgroups, its folder, its files and IPC objects."""
    cleanup.kill_uid(uid)
    for root in set(Cgroup.roots().values()):
        for stale in root.glob(f"grade-{uid}-*"):
            remove_cgroup(stale)
    boxes = [box for box in (jail.STATE / "boxes" / str(uid), *(p / "work" / str(uid)
                                                                 for p in jail.STATE.glob("jail-*")))
             if box.is_dir()]
    cleanup.remove_as(uid, tuple(map(str, boxes)))
    for box in boxes:
        box.rmdir()  # empty now; OSError if not


def reap_stale() -> None:
    """Clean every slot that no grader holds but that still has processes or a folder (a grader was killed)."""
    uids = range(FIRST_UID, FIRST_UID + UID_SLOTS)
    stale = cleanup.uids_with_processes(uids)
    for folder in (jail.STATE / "boxes", *(p / "work" for p in jail.STATE.glob("jail-*"))):
        if folder.is_dir():
            stale.update(int(p.name) for p in folder.iterdir() if p.name.isdigit() and int(p.name) in uids)
    for root in set(Cgroup.roots().values()):
        for path in root.glob("grade-*-*"):
            tag = path.name.split("-")[1]
            if tag.isdigit() and int(tag) in uids:
                stale.add(int(tag))
            elif tag == "p":  # a process-mode child's: removable only once empty (else a grading under way)
                try:
                    path.rmdir()
                except OSError:
                    pass
    locks = _locks()
    for uid in sorted(stale):
        try:
            with open(locks / str(uid), "a") as hold:
                fcntl.flock(hold, fcntl.LOCK_EX | fcntl.LOCK_NB)
                LIVE_UIDS.add(uid)
                try:
                    _clean_slot(uid)
                finally:
                    LIVE_UIDS.discard(uid)
        except OSError:
            continue  # held: a grading under way


@contextmanager
def child_box(mode: str, files: dict[str, bytes]):
    """(folder, uid) of one child: its files (``files`` and, in bwrap and user modes, grader/), private from the
    moment it exists. In bwrap mode as root and in user mode, under a uid slot; the folder and all the child
    left are removed afterwards (CleanupFailed if they cannot be)."""
    slots = mode == "user" or (mode == "bwrap" and os.geteuid() == 0)
    if not slots:  # the grader's own user: a temporary folder, mode 700 from its creation
        box = Path(tempfile.mkdtemp(prefix="grade-"))
        try:
            _write_box(box, files, with_grader=mode == "bwrap")
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
            _write_box(box, files, with_grader=True)
            _chown_tree(box, uid)
            yield box, uid
        finally:
            cleanup.kill_uid(uid)
            cleanup.remove_as(uid, (str(box),))
            box.rmdir()


def _write_box(box: Path, files: dict[str, bytes], with_grader: bool) -> None:
    for name, content in files.items():
        (box / name).parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        (box / name).write_bytes(content)
    if with_grader:
        (box / "grader").mkdir(mode=0o755)
        for name in CHILD_FILES:
            shutil.copyfile(HERE / name, box / "grader" / name)


def _chown_tree(box: Path, uid: int) -> None:
    """The child's folder and all in it to its uid (the folder mode 700: no other uid enters it), so that the
    cleanup, run as that uid, can remove everything."""
    for folder, folders, files in os.walk(box):
        for name in [*folders, *files]:
            os.lchown(os.path.join(folder, name), uid, uid)
    os.chown(box, uid, uid)
    os.chmod(box, 0o700)
