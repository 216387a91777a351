"""Running untrusted code: one child process per problem, isolated in one of three modes.

* ``bwrap``: bubblewrap puts the child in new user, PID, network, IPC and UTS namespaces that see only /usr,
  this Python, the harness files and the child's own folder, with a private /tmp. It cannot read the grader or
  other submissions, reach the network or outlive its namespace.
* ``user``: where namespaces are forbidden (Docker's default seccomp profile, so most likely on Gradescope), the
  child runs as a dedicated unprivileged uid of its own (one per child, never an account's), which can read a
  world-readable Python but not the grader's private folder. Once it ends, every process of that uid is killed
  and every file it left in the world-writable folders is removed. Needs root.
* ``process``: a child process group only, as the grader's own user; for trusted machines or containers.

In every mode the child gets a minimal environment and rlimits (set by harness.py), a pids cgroup where one is
writable caps its processes at MAX_PIDS, its output is drained and capped, and everything it started is killed
at the wall-clock timeout, once it exits, or when the grader gets SIGTERM or SIGINT (``stop``).
"""
from __future__ import annotations

import fcntl
import os
import pwd
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD_FILES = ("harness.py", "probes.py", "wire.py")  # what the child needs of the grader: never checks.py
MODES = ("bwrap", "user", "process")
MAX_PIDS = 128  # processes and threads a child may have at once
TMP_BYTES = 64 << 20  # size of the private /tmp in bwrap mode (bubblewrap 0.7 and later)
OUTPUT_CAP = 2048  # bytes of a child's output kept from its start, and as many from its end
FIRST_UID = 61000  # user mode: children run as uids FIRST_UID, FIRST_UID + 1, ... that no account uses
UID_SLOTS = 256
SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")  # where any user may leave files


@dataclass
class Finished:
    returncode: int
    timed_out: bool
    output: str


class SandboxUnavailable(RuntimeError):
    """The requested mode cannot run here; the message names the fix."""


# ---- Processes, cgroups and uids to clean up -------------------------------------------------------------------

_LIVE_GROUPS: set[int] = set()  # process groups of the children running now
_LIVE_CGROUPS: set[PidsCgroup] = set()
_LIVE_UIDS: set[int] = set()
_STOPPING = threading.Event()  # set by stop(): no new child may start


class PidsCgroup:
    """A pids cgroup (v2, or v1's pids hierarchy) that caps a child's processes, so that a fork bomb stops at
    MAX_PIDS; a no-op where cgroups are not writable. ``kill()`` ends every process in it, even ones that left
    the child's process group."""

    ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/pids"))

    @classmethod
    def root(cls) -> Path | None:
        """The writable pids hierarchy, if there is one."""
        for root in cls.ROOTS:
            v2 = (root / "cgroup.controllers").is_file() and "pids" in (root / "cgroup.controllers").read_text()
            if (v2 or root.name == "pids") and (root / "cgroup.procs").is_file() and os.access(root, os.W_OK):
                return root
        return None

    def __init__(self):
        self.path = None
        if root := self.root():
            try:
                path = Path(tempfile.mkdtemp(prefix="grade-", dir=root))
                (path / "pids.max").write_text(str(MAX_PIDS))
                self.path = path
            except OSError:
                pass

    def wrap(self, argv: list[str]) -> list[str]:
        """argv started from inside the cgroup: a shell joins it, then becomes argv, so nothing runs outside."""
        if not self.path:
            return argv
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *argv]

    def kill(self) -> None:
        if not self.path:
            return
        for _ in range(50):
            try:
                pids = [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
            except OSError:
                break
            if not pids:
                break
            for pid in pids:
                _kill_and_reap(pid)
            time.sleep(0.02)
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.02)


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, os.WNOHANG)  # orphans come to this process (a subreaper): reap them
    except (ProcessLookupError, ChildProcessError, PermissionError):
        pass


def become_subreaper() -> None:
    """Orphaned processes of a child come to this process, not to init, so that they can be reaped."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def kill_uid(uid: int) -> None:
    """Kill every process whose real or effective uid is ``uid`` (user mode: they all belong to one child)."""
    for _ in range(50):
        found = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/status") as status:
                    line = next(line for line in status if line.startswith("Uid:"))
            except (OSError, StopIteration):
                continue
            if str(uid) in line.split()[1:3]:
                found = True
                _kill_and_reap(int(entry.name))
        if not found:
            return
        time.sleep(0.02)


def remove_files_of(uid: int, roots: tuple[str, ...] = SHARED_TMP) -> None:
    """Remove what ``uid`` left in the folders every user may write to (user mode), at any depth: a uid without
    groups can create files only in world-writable folders and in folders of its own, which go whole."""
    for root in roots:
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
                if info.st_uid == uid:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
                elif stat.S_ISDIR(info.st_mode) and info.st_mode & 0o002:
                    remove_files_of(uid, (entry.path,))
            except OSError:
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
    for cgroup in list(_LIVE_CGROUPS):
        cgroup.kill()
    for uid in list(_LIVE_UIDS):
        kill_uid(uid)
        remove_files_of(uid)
    raise SystemExit(128 + signum)


# ---- One child -------------------------------------------------------------------------------------------------


def run_child(argv: list[str], cwd: Path, timeout: float) -> Finished:
    """Run argv in its own session and pids cgroup; kill all of it at the timeout or once it exits; cap its
    output."""
    if _STOPPING.is_set():
        raise SandboxUnavailable("the grader is stopping")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "TMPDIR": str(cwd), "LANG": "C.UTF-8",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cgroup = PidsCgroup()
    _LIVE_CGROUPS.add(cgroup)
    proc = subprocess.Popen(cgroup.wrap(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    _LIVE_GROUPS.add(proc.pid)
    deadline = time.monotonic() + timeout
    head, tail, dropped = bytearray(), b"", 0
    fd, timed_out, eof = proc.stdout.fileno(), False, False

    def read(wait: float) -> bool:  # False at the end of the output
        nonlocal tail, dropped
        if not select.select([fd], [], [], wait)[0]:
            return True
        chunk = os.read(fd, 1 << 16)
        keep = chunk[: OUTPUT_CAP - len(head)]
        head.extend(keep)
        tail = (tail + chunk[len(keep):])[-OUTPUT_CAP:]
        dropped += len(chunk) - len(keep)
        return bool(chunk)

    try:
        while proc.poll() is None and not _STOPPING.is_set():
            wait = min(0.05, deadline - time.monotonic())
            if wait <= 0:
                timed_out = True
                break
            if eof:  # the child closed its output but runs on
                time.sleep(wait)
            else:
                eof = not read(wait)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the child's own forks too
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        cgroup.kill()
        _LIVE_CGROUPS.discard(cgroup)
        _LIVE_GROUPS.discard(proc.pid)
    drain_until = time.monotonic() + 1.0  # processes that left the group may still hold the pipe
    while not eof and time.monotonic() < drain_until:
        eof = not read(0.05)
    proc.stdout.close()
    dropped -= len(tail)
    text = head.decode(errors="replace")
    if dropped > 0:
        text += f"\n[... {dropped} bytes of output dropped ...]\n"
    return Finished(proc.returncode, timed_out, text + tail.decode(errors="replace"))


def harness_argv(mode: str, box: Path, uid: int | None, problem: str, cpu_seconds: int) -> list[str]:
    """The command that runs the harness on box/codebase/gan.py and writes box/result.bin, isolated by mode."""
    if mode == "bwrap":
        inner = [sys.executable, "-I", "/grader/harness.py", "/work/codebase/gan.py", problem, "/work/result.bin"]
        return bubblewrap_argv(box, inner + [str(cpu_seconds)])
    if mode == "user":
        grader = box / "grader"
        grader.mkdir(mode=0o755)
        for name in CHILD_FILES:
            shutil.copyfile(HERE / name, grader / name)
        os.chown(box, uid, uid)
        os.chmod(box, 0o700)
        inner = [sys.executable, "-I", str(grader / "harness.py"), str(box / "codebase" / "gan.py"), problem,
                 str(box / "result.bin"), str(cpu_seconds), str(MAX_PIDS)]
        return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *inner]
    return [sys.executable, "-I", str(HERE / "harness.py"), str(box / "codebase" / "gan.py"), problem,
            str(box / "result.bin"), str(cpu_seconds)]


# ---- bubblewrap ------------------------------------------------------------------------------------------------

_BWRAP: tuple[int, ...] | None = None  # bubblewrap's version where it works, () where it does not


def bubblewrap_version() -> tuple[int, ...]:
    """bubblewrap's version if it is installed and may create namespaces here, else ()."""
    global _BWRAP
    if _BWRAP is None:
        try:
            works = subprocess.run(["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
                                    *_system_links(), "/usr/bin/true"], capture_output=True, timeout=20)
            version = subprocess.run(["bwrap", "--version"], capture_output=True, text=True, timeout=20).stdout
            numbers = re.search(r"(\d+)\.(\d+)", version)
            _BWRAP = tuple(map(int, numbers.groups())) if works.returncode == 0 and numbers else ()
        except (OSError, subprocess.TimeoutExpired):
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


def bubblewrap_argv(box: Path, inner: list[str], version: tuple[int, ...] | None = None) -> list[str]:
    """inner, run by bubblewrap in new namespaces that see only the system's programs and libraries, this
    Python, the child's grader files at /grader and its folder at /work. Options are those of bubblewrap 0.6
    (Ubuntu 22.04) and later; /tmp is size-capped from 0.7 on, where ``--size`` exists."""
    version = bubblewrap_version() if version is None else version
    prefixes = sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)})
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr",
            *_system_links(), "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
            "--proc", "/proc", "--dev", "/dev"]
    argv += (["--size", str(TMP_BYTES)] if version >= (0, 7) else []) + ["--tmpfs", "/tmp"]
    for prefix in prefixes:
        if not prefix.startswith("/usr/"):
            argv += ["--ro-bind", prefix, prefix]
    for name in CHILD_FILES:
        argv += ["--ro-bind", str(HERE / name), f"/grader/{name}"]
    argv += ["--bind", str(box), "/work", "--chdir", "/work", "--uid", "65534", "--gid", "65534", "--"]
    return argv + inner


# ---- A dedicated uid per child ---------------------------------------------------------------------------------

_USER_PROBLEM: str | None = None  # why user mode cannot run here ("" where it can), once checked


_UID_LOCKS = Path("/run/grade-uids")  # root's alone: student code can neither take nor release a uid


@contextmanager
def user_slot():
    """A uid no account and no other grading uses, held (an flock on a file of root's) until its child and
    everything the child left are gone: its processes are killed and its files in the shared temporary folders
    removed. The lock is released when this process ends, however it ends."""
    locks = _UID_LOCKS if os.access(_UID_LOCKS.parent, os.W_OK) else Path(tempfile.gettempdir(), "grade-uids")
    locks.mkdir(mode=0o700, exist_ok=True)
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
        _LIVE_UIDS.add(uid)
        try:
            kill_uid(uid)  # whatever an earlier, interrupted grader may have left
            remove_files_of(uid)
            yield uid
        finally:
            kill_uid(uid)
            remove_files_of(uid)
            _LIVE_UIDS.discard(uid)
            hold.close()
        return
    raise SandboxUnavailable(f"all {UID_SLOTS} uids from {FIRST_UID} are in use by other gradings")


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
    """Why user mode cannot run here, or "" if it can: it needs root, setpriv, a Python (with torch) that other
    users can run, and a grader folder that they cannot read."""
    global _USER_PROBLEM
    if _USER_PROBLEM is None:
        _USER_PROBLEM = _check_user_mode()
    return _USER_PROBLEM


def _check_user_mode() -> str:
    if os.geteuid() != 0:
        return "user mode switches to unprivileged uids, which needs root: run the grader as root"
    if not shutil.which("setpriv"):
        return "user mode needs setpriv (util-linux): apt-get install util-linux"
    private = [str(HERE / "checks.py"), str(HERE.parent / "grade.py")]
    with user_slot() as uid:
        try:
            probe = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
                                    sys.executable, "-I", "-c", _PROBE, *private], cwd="/", capture_output=True,
                                   text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"a test run as uid {uid} failed ({error})"
    if probe.returncode != 0:
        return (f"an unprivileged uid cannot run this Python ({sys.executable}; a Python under /root is private): "
                "install the grader's Python and its packages where every user can read them (/usr or /usr/local)")
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
    process. Raises SandboxUnavailable, naming the fix, if the mode asked for cannot run here."""
    if name == "auto":
        if bubblewrap_version():
            return "bwrap"
        return "user" if not user_mode_problem() else "process"
    if name == "bwrap" and not bubblewrap_version():
        raise SandboxUnavailable("bubblewrap cannot create namespaces here: install it (apt-get install "
                                 "bubblewrap) or allow user namespaces; --sandbox user runs without them")
    if name == "user" and (problem := user_mode_problem()):
        raise SandboxUnavailable(problem)
    if name not in MODES:
        raise SandboxUnavailable(f"unknown sandbox mode {name!r}: expected one of {', '.join(MODES)} or auto")
    return name
