"""Running one sandboxed child: its own session and cgroups, its output drained and capped, its result through a
pipe, everything it started killed at the timeout, once it exits, or when the grader is stopped (``stop``).
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from grading.sandbox import cleanup
from grading.sandbox.cgroups import Cgroup
from grading.sandbox.slots import LIVE_UIDS, box_folder, uid_range

TMP_BYTES = 64 << 20  # each writable place of a child: bwrap's tmpfs mounts (0.7 and later), user mode's folder
MAX_RESULT_BYTES = 64 << 20  # what a child may send back
OUTPUT_CAP = 2048  # bytes of a child's output kept from its start, and as many from its end
DISK_CHECK_SECONDS = 0.2  # user mode: how often a child's folder is measured against TMP_BYTES (run_child)
RESULT_FD = "{result_fd}"  # in a child's argv: replaced by the number of the pipe its result goes to


@dataclass
class Finished:
    returncode: int
    timed_out: bool
    output: str
    result: bytes | None = None  # what the child sent through its result pipe; None if over the cap
    over_budget: str = ""  # a budget the child broke, and was killed for
    oom_killed: bool = False  # the memory cgroup's out-of-memory killer ended one of its processes
    bounds: list[str] = field(default_factory=list)  # the cgroups that held the child


class SandboxUnavailable(RuntimeError):
    """The requested mode cannot run here; the message names the fix."""


_LIVE_GROUPS: set[int] = set()  # process groups of the children running now
_LIVE_CGROUPS: set[Cgroup] = set()
_STOPPING = threading.Event()  # set by stop(): no new child may start


def become_subreaper() -> None:
    """Orphaned processes of a child come to this process, not to init, so that they can be reaped."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def others_can_read(path: Path) -> bool:
    """Whether a user outside the owner and group can reach ``path`` and read it."""
    path = Path(path).resolve()
    if any(not os.stat(parent).st_mode & 0o001 for parent in path.parents):
        return False
    return bool(os.stat(path).st_mode & 0o004)


def stop(signum, frame) -> None:
    """SIGTERM or SIGINT to the grader: kill every child and what it started, then exit, so that the temporary
    folders go too."""
    _STOPPING.set()
    for pgid in list(_LIVE_GROUPS):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for uid in list(LIVE_UIDS):
        try:
            cleanup.kill_uid(uid)
        except cleanup.CleanupFailed:
            pass
    for cgroup in list(_LIVE_CGROUPS):
        try:
            cgroup.kill()
        except cleanup.CleanupFailed:
            pass
    for uid in list(LIVE_UIDS):  # its folder and files; the next grader cleans what this one cannot
        try:
            cleanup.remove_as(uid, (str(box_folder(uid)),), span=uid_range())
            box_folder(uid).rmdir()
        except (OSError, cleanup.CleanupFailed):
            pass
    raise SystemExit(128 + signum)


# ---- One child -------------------------------------------------------------------------------------------------


def run_child(argv: list[str], cwd: Path, timeout: float, tag: str = "p", disk: Path | None = None,
              env: dict | None = None) -> Finished:
    """Run argv in its own session and cgroups; kill all of it at the timeout, once it exits, or once the
    folder ``disk`` (if given) holds more than TMP_BYTES; cap its output; collect what it writes to the pipe
    whose number replaces RESULT_FD in argv."""
    if _STOPPING.is_set():
        raise SandboxUnavailable("the grader is stopping")
    env = env or {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "TMPDIR": str(cwd), "LANG": "C.UTF-8",
                  "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cgroup = Cgroup(tag)
    _LIVE_CGROUPS.add(cgroup)
    result_read, result_write = os.pipe()
    os.set_inheritable(result_write, True)
    argv = [str(result_write) if a == RESULT_FD else a for a in argv]
    try:
        proc = subprocess.Popen(cgroup.wrap(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                pass_fds=(result_write,))
    except BaseException:
        os.close(result_read)
        os.close(result_write)
        _LIVE_CGROUPS.discard(cgroup)
        cgroup.kill()
        raise
    os.close(result_write)
    _LIVE_GROUPS.add(proc.pid)
    deadline = time.monotonic() + timeout
    head, tail, dropped = bytearray(), b"", 0
    result, result_over = bytearray(), False
    out_fd, open_fds = proc.stdout.fileno(), {proc.stdout.fileno(), result_read}
    timed_out, over_budget, next_disk_check = False, "", time.monotonic()

    def read(wait: float) -> None:  # drain whatever is ready on the output and the result pipes
        nonlocal tail, dropped, result_over
        for fd in select.select(list(open_fds), [], [], wait)[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                open_fds.discard(fd)
            elif fd == out_fd:
                keep = chunk[: OUTPUT_CAP - len(head)]
                head.extend(keep)
                tail = (tail + chunk[len(keep):])[-OUTPUT_CAP:]
                dropped += len(chunk) - len(keep)
            elif len(result) + len(chunk) <= MAX_RESULT_BYTES:
                result.extend(chunk)
            else:
                result_over = True

    try:
        while proc.poll() is None and not _STOPPING.is_set():
            wait = min(0.05, deadline - time.monotonic())
            if wait <= 0:
                timed_out = True
                _dump_stacks(proc.pid)
                until = time.monotonic() + 2.0  # the stacks, written to the output (slowly on a busy machine)
                while open_fds and time.monotonic() < until:
                    read(0.05)
                break
            if open_fds:
                read(wait)
            else:  # the child closed both pipes but runs on
                time.sleep(wait)
            if disk is not None and time.monotonic() >= next_disk_check:
                walked = time.monotonic()
                if over_budget := folder_over_budget(disk):
                    break
                # every DISK_CHECK_SECONDS, or less often while the walk is long: at most a fifth of a core
                next_disk_check = time.monotonic() + max(DISK_CHECK_SECONDS, 4 * (time.monotonic() - walked))
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the child's own forks too
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        _LIVE_GROUPS.discard(proc.pid)
        bounds, oom_killed = cgroup.bounds(), cgroup.oom_kills() > 0
        try:
            cgroup.kill()
        finally:
            _LIVE_CGROUPS.discard(cgroup)
    drain_until = time.monotonic() + 1.0  # processes that left the group may still hold the pipes
    while open_fds and time.monotonic() < drain_until:
        read(0.05)
    proc.stdout.close()
    os.close(result_read)
    dropped -= len(tail)
    text = head.decode(errors="replace")
    if dropped > 0:
        text += f"\n[... {dropped} bytes of output dropped ...]\n"
    return Finished(proc.returncode, timed_out, text + tail.decode(errors="replace"),
                    result=None if result_over else bytes(result), over_budget=over_budget, bounds=bounds,
                    oom_killed=oom_killed)


def _dump_stacks(root: int) -> None:
    """Ask every Python process under ``root`` to print its threads' stacks (harness.py registers faulthandler
    on SIGUSR1), so that a time limit says where the code was."""
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    parents[int(entry.name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    for pid in parents:
        ancestor, depth = pid, 0
        while ancestor in parents and ancestor != root and depth < 64:
            ancestor, depth = parents[ancestor], depth + 1
        try:
            if ancestor == root and pid != root and open(f"/proc/{pid}/comm").read().startswith("python"):
                os.kill(pid, signal.SIGUSR1)
        except OSError:
            pass


def folder_over_budget(folder: Path, max_entries: int = 10_000) -> str:
    """Why what lies in ``folder`` breaks the child's disk budget, or ""."""
    total, count = cleanup.usage(str(folder), max_entries)
    if count > max_entries:
        return f"more than {max_entries} files"
    if total > TMP_BYTES:
        return f"more than {TMP_BYTES >> 20} MiB written"
    return ""


