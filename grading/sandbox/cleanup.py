"""Removing what a grading uid left behind: its processes, its files at any depth, its IPC objects.

The removal runs in a forked process that has become the uid itself, so whatever the student's code swapped
under it (symbolic links, renamed folders), it can only remove what that uid could remove anyway. It walks
iteratively with file descriptors (never a path of more than one name, never following a symbolic link, never
recursing in Python), so no folder tree is too deep or too long for it. ``CleanupFailed`` means something of
the uid is still there. Callers (slots.py) check first that the uid is the grader's, never an account's.
"""
from __future__ import annotations

import ctypes
import os
import pwd
import signal
import stat
import time

from grading.child.confine import KEYCTL  # keyctl(2)'s number on each architecture

SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue")  # where any user may leave files
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class CleanupFailed(RuntimeError):
    """Something a child left could not be removed."""


def kill_uid(uid: int) -> None:
    """Kill every process whose real, effective or saved uid is ``uid`` and reap those that are ours. A zombie is
    dead already (it runs nothing and holds no file or memory); its parent reaps it, perhaps another grader."""
    for _ in range(100):
        alive = zombies = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/status") as status:
                    fields = dict(line.split(":", 1) for line in status if line.startswith(("State:", "Uid:")))
            except (OSError, ValueError):
                continue
            if str(uid) in fields.get("Uid", "").split()[:3]:
                if fields.get("State", "").split()[:1] == ["Z"]:
                    zombies = True
                else:
                    alive = True
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                    os.waitpid(int(entry.name), os.WNOHANG)  # orphans come to the grader (a subreaper)
                except (ProcessLookupError, ChildProcessError, PermissionError):
                    pass
        if not alive and not zombies:
            return
        time.sleep(0.02)
    if alive:  # zombies alone, after 2 s: their parent has yet to reap them
        raise CleanupFailed(f"processes of uid {uid} survived SIGKILL")


def uids_with_processes(uids: range) -> set[int]:
    """The uids of ``uids`` that some process runs as."""
    found = set()
    for entry in os.scandir("/proc"):
        try:
            with open(f"/proc/{entry.name}/status") as status:
                line = next(line for line in status if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        found.update(int(u) for u in line.split()[1:4] if int(u) in uids)
    return found


def remove_as(uid: int, folders: tuple[str, ...] = (), shared: tuple[str, ...] = SHARED_TMP,
              span: range | None = None) -> None:
    """As ``uid``: empty each of ``folders`` (its own), remove its entries in ``shared`` (at any depth of
    world-writable folders), its System V IPC objects and the keys of its user keyrings. Files that the uid cannot
    remove itself (another of the grader's uids, ``span``, planted a private folder in one of its own) are removed in
    a second pass as root, with the same walk, which never follows a symbolic link, never leaves the filesystem it
    started on, and removes only what ``uid`` or another uid of ``span`` that is no account owns. Raises
    CleanupFailed if anything of it stays."""
    failed = _in_fork(uid, folders, shared, become=True)
    if failed & _FILES and os.geteuid() == 0 and span is not None:
        accounts = frozenset(p.pw_uid for p in pwd.getpwall() if p.pw_uid in span)
        allowed = (span, accounts)
        failed = (failed & ~_FILES) | _in_fork(uid, folders, shared, become=False, allowed=allowed)
    if failed:
        what = [name for bit, name in ((_FILES, "files"), (_IPC_OBJECTS, "IPC objects"), (_KEYS, "keys"))
                if failed & bit]
        raise CleanupFailed(f"{' and '.join(what)} of uid {uid} could not be removed")


_FILES, _IPC_OBJECTS, _KEYS = 1, 2, 4


def _in_fork(uid: int, folders: tuple[str, ...], shared: tuple[str, ...], become: bool, allowed=None) -> int:
    """Run the removal in a forked process, as ``uid`` if ``become`` (then also IPC objects and keyrings), else
    as root, removing only what ``allowed`` (span, accounts) permits; the bits of what stayed."""
    pid = os.fork()
    if pid == 0:  # the child: only system calls from here on, then _exit
        code = _FILES | _IPC_OBJECTS | _KEYS
        try:
            if become:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            try:
                code = _FILES if sum(_empty(folder, uid, allowed) for folder in folders) + \
                    sum(_sweep(root, uid, allowed) for root in shared) else 0
            except (OSError, CleanupFailed):
                code = _FILES
            if become:
                try:
                    code |= _IPC_OBJECTS if _remove_ipc(uid) else 0
                except OSError:
                    code |= _IPC_OBJECTS
                try:
                    code |= _KEYS if _clear_keyrings() else 0
                except OSError:
                    code |= _KEYS
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if 0 <= code < 8 else _FILES | _IPC_OBJECTS | _KEYS


def remove_tree(folder: str) -> int:
    """Remove ``folder`` and everything in it, as this process's own user (process mode's folders, which only
    this user writes to); the number of entries that stayed."""
    left = _empty(folder, os.geteuid())
    try:
        os.rmdir(folder)
    except FileNotFoundError:
        pass
    except OSError:
        left += 1
    return left


def _empty(folder: str, uid: int, allowed=None) -> int:
    """Remove everything inside ``folder``; the number of entries that stayed."""
    try:
        fd = os.open(folder, _OPEN_DIR)
    except FileNotFoundError:
        return 0
    return _walk(fd, uid, owned=True, allowed=allowed)


def _sweep(root: str, uid: int, allowed=None) -> int:
    try:
        fd = os.open(root, _OPEN_DIR)
    except OSError:
        return 0  # no such folder here, or not one the uid can read: it cannot have written there either
    return _walk(fd, uid, owned=False, allowed=allowed)


def _walk(top: int, uid: int, owned: bool, allowed=None) -> int:
    """Depth-first, iteratively, from the open folder ``top``: in an ``owned`` folder remove every entry; in
    another one, remove the entries of ``uid`` and descend into world-writable folders only. Only the current
    folder is open; going up reopens ``..`` and checks it is the folder we came from. ``allowed`` (span, accounts),
    for the pass as root: only entries of ``uid`` or of a uid of span that is no account, on top's filesystem."""
    stack: list[tuple[str, tuple[int, int], bool, set[str]]] = []  # (name, (dev, ino) of the parent, owned, kept)
    fd, kept, left = top, set(), 0
    device = os.fstat(top).st_dev
    try:
        while True:
            entry = _next_entry(fd, kept, uid, owned)
            if entry is None:  # this folder is done: go up and remove it if it was the uid's
                if not stack:
                    return left
                name, parent_id, was_owned, parent_kept = stack.pop()
                fd, same = _go_up(fd, parent_id)
                if not same:
                    raise CleanupFailed("a folder moved during the cleanup")
                if not (owned and _removed(name, fd, folder=True)):
                    parent_kept.add(name)
                    left += owned
                owned, kept = was_owned, parent_kept
                continue
            name, info = entry
            mine = owned or info.st_uid == uid
            if allowed is not None and (info.st_dev != device or not (
                    info.st_uid == uid or (info.st_uid in allowed[0] and info.st_uid not in allowed[1]))):
                kept.add(name)  # as root: never what belongs to someone else, never another filesystem
                left += mine
                continue
            if stat.S_ISDIR(info.st_mode) and (mine or info.st_mode & 0o002):
                child = _enter(name, fd, mine)
                if child is None:
                    kept.add(name)
                    left += mine
                    continue
                here = os.fstat(fd)
                stack.append((name, (here.st_dev, here.st_ino), owned, kept))
                if mine and stat.S_IMODE(os.fstat(child).st_mode) & 0o700 != 0o700:
                    try:
                        os.fchmod(child, 0o700)
                    except OSError:
                        pass  # another uid's folder: its entries are left, and counted, as they come
                os.close(fd)
                fd, owned, kept = child, mine, set()
            elif mine:
                if not _removed(name, fd, folder=False):
                    kept.add(name)
                    left += 1
            else:
                kept.add(name)  # a world-writable folder it cannot enter
    finally:
        os.close(fd)


def _enter(name: str, fd: int, mine: bool) -> int | None:
    """The open folder ``name`` of the open folder ``fd`` (one of the uid's own that it made unreadable is made
    readable first), or None if it cannot be entered."""
    try:
        return os.open(name, _OPEN_DIR, dir_fd=fd)
    except OSError:
        if not mine:
            return None
    try:
        os.chmod(name, 0o700, dir_fd=fd, follow_symlinks=False)
        return os.open(name, _OPEN_DIR, dir_fd=fd)
    except OSError:
        return None


def _removed(name: str, fd: int, folder: bool) -> bool:
    """Whether the entry ``name`` of the open folder ``fd`` (an empty folder, or anything else) was removed."""
    try:
        (os.rmdir if folder else os.unlink)(name, dir_fd=fd)
        return True
    except OSError:
        return False


def _go_up(fd: int, parent_id: tuple[int, int]) -> tuple[int, bool]:
    """(the open parent of the open folder ``fd``, which is closed; whether it is the folder ``parent_id`` we
    came from)."""
    up = os.open("..", _OPEN_DIR, dir_fd=fd)
    os.close(fd)
    info = os.fstat(up)
    return up, (info.st_dev, info.st_ino) == parent_id


def _next_entry(fd: int, kept: set[str], uid: int, owned: bool):
    """The first entry of the open folder, not in ``kept``, that is the uid's or a world-writable folder, with
    its lstat, or None; entries passed over join ``kept``, so each is looked at once."""
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.name in kept:
                continue
            try:
                info = os.stat(entry.name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if owned or info.st_uid == uid or (stat.S_ISDIR(info.st_mode) and info.st_mode & 0o002):
                return entry.name, info
            kept.add(entry.name)
    return None


_IPC = (("shm", "shmctl"), ("sem", "semctl"), ("msg", "msgctl"))


def _remove_ipc(uid: int) -> int:
    """Remove the System V shared memory, semaphores and message queues that ``uid`` owns or created (the creator
    may remove an object it gave to another uid); the number left."""
    libc = ctypes.CDLL(None, use_errno=True)
    left = 0
    for kind, call in _IPC:
        try:
            with open(f"/proc/sysvipc/{kind}") as table:
                rows = [line.split() for line in table.readlines()[1:]]
        except OSError:
            continue
        # columns of the id, the owner's uid and the creator's (which IPC_SET cannot change)
        head = {"shm": (1, 7, 9), "sem": (1, 4, 6), "msg": (1, 7, 9)}[kind]
        for row in rows:
            if len(row) > head[2] and str(uid) in (row[head[1]], row[head[2]]):
                ipc_id = int(row[head[0]])
                result = libc.semctl(ipc_id, 0, 0) if kind == "sem" else getattr(libc, call)(ipc_id, 0, None)
                left += result != 0
    return left


def _clear_keyrings() -> int:
    """Clear this process's uid's user and user-session keyrings (the kernel keeps them after its processes end,
    for the uid's next process); 0, or 1 if a keyring held keys that could not be cleared."""
    import platform

    number = KEYCTL.get(platform.machine())
    if number is None:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    left = 0
    for ring in (-4, -5):  # KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING
        # KEYCTL_CLEAR (7); a keyring that does not exist yet, or a kernel without keyrings, has nothing to clear
        if libc.syscall(ctypes.c_long(number), ctypes.c_long(7), ctypes.c_long(ring)) < 0:
            left += ctypes.get_errno() not in (0, 2, 38, 126)  # ENOENT, ENOSYS, ENOKEY
    return left


def usage(folder: str, max_entries: int) -> tuple[int, int]:
    """(bytes allocated, entries) under ``folder``, at any depth, never following a symbolic link; the count
    stops past ``max_entries``. Like the removal, it keeps one folder open at a time and checks ``..`` on the
    way up. Each folder is listed once, its names kept while its subfolders are walked (at most ``max_entries``
    + 1 names read in all), so a walk costs in proportion to the entries however they are nested (the grader
    walks a child's folder every few tenths of a second). A tree changed under it is counted as far as it was
    seen."""
    try:
        fd = os.open(folder, _OPEN_DIR)
    except OSError:
        return 0, 0
    total, count, listed = 0, 0, 0  # listed: names read (those not looked at yet wait in ``names`` and ``stack``)
    stack: list[tuple[tuple[int, int], list[str]]] = []  # ((dev, ino) of the parent, its names not yet looked at)

    def listing(fd: int) -> list[str]:
        nonlocal listed
        with os.scandir(fd) as entries:
            names = [entry.name for _, entry in zip(range(max_entries + 1 - listed), entries)]
        listed += len(names)
        names.reverse()  # taken from the end: in the order read
        return names

    try:
        names = listing(fd)
        while count <= max_entries:
            if not names:
                if not stack:
                    break
                parent_id, names = stack.pop()
                fd, same = _go_up(fd, parent_id)
                if not same:
                    break
                continue
            name = names.pop()
            count += 1
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                total += info.st_blocks * 512
                if not stat.S_ISDIR(info.st_mode):
                    continue
                child = os.open(name, _OPEN_DIR, dir_fd=fd)
            except OSError:
                continue
            here = os.fstat(fd)
            stack.append(((here.st_dev, here.st_ino), names))
            os.close(fd)
            fd = child
            names = listing(fd)
    finally:
        os.close(fd)
    return total, count
