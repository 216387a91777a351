"""Running untrusted code: one child process per problem, isolated in one of three modes.

* ``bwrap``: bubblewrap puts the child in new user, PID, network, IPC and UTS namespaces that see only /usr,
  this Python, the harness and the student's codebase (read-only), with size-capped private /tmp, /dev/shm and
  working folder. Started by root, bubblewrap itself runs as a dedicated unprivileged uid (as in user mode), so
  the sandbox's uid is that uid on the host, never root.
* ``user``: where namespaces are forbidden (Docker's default seccomp profile, so most likely on Gradescope), the
  child runs as a dedicated unprivileged uid of its own (one per child, never an account's), chrooted into the
  jail (jail.py) where it can be built: nothing of the host but the system's libraries and this Python.
  Needs root.
* ``process``: a child process group only, as the grader's own user; for trusted machines or containers.

In every mode the child gets a minimal environment and rlimits (set by harness.py), its processes and memory are
capped together by cgroups where they are writable, its output is drained and capped, its result comes back
through a pipe (never a file it could tamper with), and everything it started is killed at the wall-clock
timeout, once it exits, or when the grader gets SIGTERM or SIGINT (``stop``). A uid's slot is cleaned
(processes, files, IPC objects, cgroups) before it is used and after, so a grader killed with SIGKILL leaves
nothing that the next grading would meet.
"""
from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from grading import cleanup, jail
from grading.cgroups import MAX_PIDS, Cgroup
from grading.slots import (FIRST_UID, LIVE_UIDS, UID_SLOTS, NoSlot, box_folder, child_box,  # noqa: F401
                           reap_stale, uid_slot)

HERE = Path(__file__).resolve().parent
MODES = ("bwrap", "user", "process")
TMP_BYTES = 64 << 20  # each writable place of a child: bwrap's tmpfs mounts (0.7 and later), user mode's folder
MAX_RESULT_BYTES = 64 << 20  # what a child may send back
OUTPUT_CAP = 2048  # bytes of a child's output kept from its start, and as many from its end
RESULT_FD = "{result_fd}"  # in a child's argv: replaced by the number of the pipe its result goes to


@dataclass
class Finished:
    returncode: int
    timed_out: bool
    output: str
    result: bytes | None = None  # what the child sent through its result pipe; None if over the cap
    over_budget: str = ""  # a budget the child broke, and was killed for
    oom_killed: bool = False  # the memory cgroup's out-of-memory killer ended one of its processes
    bounds: list[str] = field(default_factory=list)  # what held the child, for the results


class SandboxUnavailable(RuntimeError):
    """The requested mode cannot run here; the message names the fix."""


# ---- Processes, cgroups and uids to clean up -------------------------------------------------------------------

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
            cleanup.remove_as(uid, (str(box_folder(uid)),))
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
                until = time.monotonic() + 1.0  # the stacks, written to the output
                while open_fds and time.monotonic() < until:
                    read(0.05)
                break
            if open_fds:
                read(wait)
            else:  # the child closed both pipes but runs on
                time.sleep(wait)
            if disk is not None and time.monotonic() >= next_disk_check:
                next_disk_check = time.monotonic() + 0.2
                if over_budget := folder_over_budget(disk):
                    break
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


# ---- The command of each mode ----------------------------------------------------------------------------------


def harness_argv(mode: str, box: Path, uid: int | None, problem: str, cpu_seconds: int) -> list[str]:
    """The command that runs the harness on box/codebase/gan.py, its result sent to RESULT_FD, isolated by
    mode. box holds codebase/ and, for bwrap and user modes, grader/ (the child's copy of CHILD_FILES)."""
    tail = [problem, RESULT_FD, str(cpu_seconds)]
    if mode == "bwrap":
        inner = [sys.executable, "-I", "/grader/harness.py", "/work/codebase/gan.py", *tail]
        if uid is None:
            return bubblewrap_argv(box, inner)
        return _as_uid(uid, bubblewrap_argv(box, inner + [str(MAX_PIDS)]))  # the uid is this child's alone
    if mode == "user":
        inside = seen_from_inside(box)
        return python_as_uid(box, uid, [str(inside / "grader" / "harness.py"), str(inside / "codebase" / "gan.py"),
                                        *tail, str(MAX_PIDS)])
    return [sys.executable, "-I", str(HERE / "harness.py"), str(box / "codebase" / "gan.py"), *tail]


def seen_from_inside(box: Path) -> Path:
    """The path of a user-mode child's folder as the child sees it (chrooted into the jail, or not)."""
    root = jail.ready()
    return Path("/", box.relative_to(root)) if root and root in box.parents else box


def python_as_uid(box: Path, uid: int, args: list[str]) -> list[str]:
    """``python -I args`` as ``uid``, chrooted into the jail if ``box`` lies in it."""
    root = jail.ready()
    argv = _as_uid(uid, [sys.executable, "-I", *args])
    chroot = shutil.which("chroot", path="/usr/sbin:/sbin:/usr/bin:/bin") or "chroot"
    return [chroot, str(root), *argv] if root and root in box.parents else argv


def _as_uid(uid: int, argv: list[str]) -> list[str]:
    """argv run as ``uid`` with no groups, where no set-uid file can raise its privileges."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs", "--", *argv]


def child_env(mode: str, box: Path) -> dict:
    """The environment of a child: its folder is its home and temporary folder (as it sees it)."""
    home = "/work" if mode == "bwrap" else str(seen_from_inside(box) if mode == "user" else box)
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "MPLCONFIGDIR": home}


# ---- bubblewrap ------------------------------------------------------------------------------------------------

_BWRAP: tuple[int, ...] | None = None  # bubblewrap's version where it works, () where it does not


def bubblewrap_version() -> tuple[int, ...]:
    """bubblewrap's version if it is installed and may create namespaces here (as an unprivileged uid, when the
    grader is root: the mapping must never give the sandbox root's files), else ()."""
    global _BWRAP
    if _BWRAP is None:
        _BWRAP = ()
        try:
            version = subprocess.run(["bwrap", "--version"], capture_output=True, text=True, timeout=20).stdout
            numbers = re.search(r"(\d+)\.(\d+)", version)
            if numbers:
                found = tuple(map(int, numbers.groups()))
                argv = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
                        *_system_links(), "/usr/bin/true"]
                if os.geteuid() == 0:
                    with uid_slot() as uid:
                        works = subprocess.run(_as_uid(uid, argv), capture_output=True, timeout=20, cwd="/")
                else:
                    works = subprocess.run(argv, capture_output=True, timeout=20)
                _BWRAP = found if works.returncode == 0 else ()
        except (OSError, subprocess.TimeoutExpired, NoSlot, cleanup.CleanupFailed):
            _BWRAP = ()
    return _BWRAP


def _system_links() -> list[str]:
    """/bin, /lib, ... as the host has them: symbolic links into /usr (merged /usr) or read-only folders."""
    args = []
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    return args


def _python_trees() -> list[tuple[str, str]]:
    """(host source, sandbox path) of this Python's prefixes; from the jail where there is one, since an
    unprivileged uid may not be able to reach the originals (a Python under /root)."""
    root = jail.ready()
    trees = []
    for prefix in sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}):
        if not prefix.startswith("/usr/"):
            source = root / prefix.lstrip("/") if root and (root / prefix.lstrip("/")).is_dir() else Path(prefix)
            trees.append((str(source), prefix))
    return trees


def bubblewrap_argv(box: Path, inner: list[str], version: tuple[int, ...] | None = None) -> list[str]:
    """inner, run by bubblewrap in new namespaces that see only the system's programs and libraries, this
    Python, the child's grader files at /grader and its codebase at /work/codebase, read-only; /tmp, /dev/shm
    and /work are private tmpfs mounts, each capped at TMP_BYTES from bubblewrap 0.7 on (``--size``); /proc/sys
    is read-only. Options are those of bubblewrap 0.6 (Ubuntu 22.04) and later."""
    version = bubblewrap_version() if version is None else version
    size = ["--size", str(TMP_BYTES)] if version >= (0, 7) else []
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr",
            *_system_links(), "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
            "--proc", "/proc", "--dev", "/dev"]
    for folder in ("/tmp", "/dev/shm", "/work"):
        argv += [*size, "--tmpfs", folder]
    for source, target in _python_trees():
        argv += ["--ro-bind", source, target]
    argv += ["--ro-bind", str(box / "grader"), "/grader", "--ro-bind", str(box / "codebase"), "/work/codebase",
             "--chdir", "/work", "--uid", "65534", "--gid", "65534", "--"]
    return argv + inner


# ---- Choosing a mode -------------------------------------------------------------------------------------------

_USER_PROBLEM: str | None = None  # why user mode cannot run here ("" where it can), once checked

_PROBE = """
import importlib.util, os, sys
for path in sys.argv[1:]:
    try:
        open(path, "rb").close()
        print("readable", path)
    except OSError:
        pass
if importlib.util.find_spec("torch") is None:
    print("no torch")
"""


def user_mode_problem() -> str:
    """Why user mode cannot run here, or "" if it can: it needs root, setpriv, and a Python (with torch) that the
    child's uid can run: the jail's, or, where no jail can be built, one other users can read, beside a grader
    folder that they cannot read."""
    global _USER_PROBLEM
    if _USER_PROBLEM is None:
        _USER_PROBLEM = _check_user_mode()
    return _USER_PROBLEM


def prepare_jail() -> str:
    """Build the jail if it is missing (root only); "" on success, else why not."""
    if os.geteuid() != 0:
        return "building the jail needs root"
    try:
        jail.prepare()
        return ""
    except OSError as error:
        return str(error)


def _check_user_mode() -> str:
    if os.geteuid() != 0:
        return "user mode switches to unprivileged uids, which needs root: run the grader as root"
    if not shutil.which("setpriv"):
        return "user mode needs setpriv (util-linux): apt-get install util-linux"
    prepare_jail()
    private = [str(HERE / "checks.py"), str(HERE.parent / "grade.py")]
    with child_box("user", {}) as (box, uid):
        argv = python_as_uid(box, uid, ["-c", _PROBE, *private])
        try:
            probe = subprocess.run(argv, cwd="/", capture_output=True, text=True, timeout=60,
                                   env=child_env("user", box))
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"a test run as uid {uid} failed ({error})"
    if probe.returncode != 0:
        return (f"an unprivileged uid cannot run this Python ({sys.executable}; a Python under /root is private, "
                "and no jail could be built under /var/lib): install the grader's Python and its packages where "
                "every user can read them (/usr or /usr/local)")
    if "no torch" in probe.stdout:
        return f"an unprivileged uid cannot import torch with {sys.executable}: install it world-readable"
    readable = [line.split(" ", 1)[1] for line in probe.stdout.splitlines() if line.startswith("readable")]
    if readable:
        folder = HERE.parent
        return (f"an unprivileged uid can read the grader's files ({readable[0]}): make the grader's folder "
                f"private (chmod 700 {folder})")
    return ""


def pick_mode(name: str = "auto") -> str:
    """The mode to run children in: ``auto`` takes bwrap where it works, else user where it can run, else
    process. Raises SandboxUnavailable, naming the fix, if the mode asked for cannot run here. As root, first
    cleans what a killed earlier grader left, and builds the jail."""
    if name not in (*MODES, "auto"):
        raise SandboxUnavailable(f"unknown sandbox mode {name!r}: expected one of {', '.join(MODES)} or auto")
    if os.geteuid() == 0 and name != "process":
        try:
            reap_stale()
        except cleanup.CleanupFailed as error:
            raise SandboxUnavailable(f"what an earlier grading left cannot be removed ({error})") from None
        prepare_jail()
    if name == "auto":
        if bubblewrap_version():
            return "bwrap"
        return "user" if not user_mode_problem() else "process"
    if name == "bwrap" and not bubblewrap_version():
        raise SandboxUnavailable("bubblewrap cannot create namespaces here (as an unprivileged uid, when the grader "
                                 "is root): install it (apt-get install bubblewrap) or allow unprivileged user "
                                 "namespaces; --sandbox user runs without them")
    if name == "user" and (problem := user_mode_problem()):
        raise SandboxUnavailable(problem)
    return name


def bounds(mode: str, uid: int | None, held: list[str]) -> list[str]:
    """What bounded a child: the cgroups that ``held``, else the rlimits; and where it could write."""
    lines = list(held)
    if not any(line.startswith("processes") for line in held):
        lines.append(f"processes: at most {MAX_PIDS} for its uid (RLIMIT_NPROC)" if uid is not None
                     else "processes: no cap (process mode without a writable pids cgroup)")
    if not any(line.startswith("memory") for line in held):
        lines.append("memory: 6 GiB of address space per process (RLIMIT_AS), no cap across its processes")
    mib = TMP_BYTES >> 20
    if mode == "bwrap":
        lines.append(f"disk: /tmp, /dev/shm and /work {mib} MiB each (tmpfs)" if bubblewrap_version() >= (0, 7)
                     else "disk: /tmp, /dev/shm and /work in memory, without a size cap (bubblewrap before 0.7)")
    elif mode == "user":
        lines.append(f"disk: its folder, {mib} MiB (checked every 0.2 s)" + (
            "; nothing else is writable in the jail" if jail.ready() else
            f"; /tmp, /var/tmp, /dev/shm: {mib} MiB per file (RLIMIT_FSIZE), removed afterwards"))
    return lines


def describe(mode: str) -> str:
    """A line for the results: the mode, and where it ran (jail, unprivileged uid)."""
    if mode == "bwrap":
        return "bwrap, as an unprivileged uid" if os.geteuid() == 0 else "bwrap, as the grader's own user"
    if mode == "user":
        return "user, chrooted into the jail" if jail.ready() else "user, without a jail (the host's files visible)"
    return mode
