"""The three sandbox modes: the command that runs a child in each, and which mode runs here.

* ``bwrap``: bubblewrap puts the child in new user, PID, network, IPC and UTS namespaces that see only /usr,
  this Python, the harness and the student's codebase (read-only), with size-capped private /tmp, /dev/shm and
  working folder. Started by root, bubblewrap itself runs as a slot's unprivileged uid (slots.py), so the
  sandbox's uid is that uid on the host, never root.
* ``user``: where namespaces are forbidden (Docker's default seccomp profile, so most likely on Gradescope), the
  child runs as a slot's uid, chrooted into the jail (jail.py) where it can be built: nothing of the host but the
  system's libraries and this Python. Needs root.
* ``process``: a child process group only, as the grader's own user; for trusted machines or containers.

In every mode the child confines itself before the student's code runs (grading/child/confine.py: an empty
session keyring, a seccomp filter). ``pick_mode`` probes each mode it considers (probe.py) and takes only one
whose trivial child started and reported ready.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from grading.sandbox import cleanup, jail, probe
from grading.sandbox.cgroups import MAX_PIDS, Cgroup
from grading.sandbox.run import RESULT_FD, TMP_BYTES, SandboxUnavailable
from grading.sandbox.slots import NoSlot, reap_stale, uid_slot

MODES = ("bwrap", "user", "process")
CHILD = Path(__file__).resolve().parents[1] / "child"
def harness_argv(mode: str, box: Path, uid: int | None, problems: list[str], cpu_seconds: int, timeout: float,
                 parallel: int = 3) -> list[str]:
    """The command that runs the harness on box/codebase/gan.py for ``problems`` (or ["probe"]), its result sent to
    RESULT_FD, isolated by mode. box holds codebase/ and, for bwrap and user modes, grader/ (the child's copy of
    grading/child)."""
    tail = [",".join(problems), RESULT_FD, str(cpu_seconds), f"{timeout:g}", str(parallel)]
    if mode == "bwrap":
        inner = [sys.executable, "-I", "/grader/harness.py", "/work/codebase/gan.py", *tail]
        if uid is None:
            return bubblewrap_argv(box, inner)
        return _as_uid(uid, bubblewrap_argv(box, inner + [str(MAX_PIDS)]))  # the uid is this child's alone
    if mode == "user":
        inside = seen_from_inside(box)
        return python_as_uid(box, uid, [str(inside / "grader" / "harness.py"), str(inside / "codebase" / "gan.py"),
                                        *tail, str(MAX_PIDS)])
    return [sys.executable, "-I", str(CHILD / "harness.py"), str(box / "codebase" / "gan.py"), *tail]


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

_CHOSEN: dict[tuple[str, str], probe.Probed] = {}  # (mode, what its probe depends on) -> its probe, in this process


def prepare_jail() -> str:
    """Build the jail if it is missing and hold it (root only); "" on success, else why not."""
    if os.geteuid() != 0:
        return "building the jail needs root"
    try:
        jail.prepare()
        return ""
    except OSError as error:
        return str(error)


def _precondition(mode: str) -> str:
    """Why ``mode`` cannot even be tried here, naming the fix, or ""."""
    if mode == "bwrap" and not bubblewrap_version():
        return ("bubblewrap cannot create namespaces here (as an unprivileged uid, when the grader is root): install "
                "it (apt-get install bubblewrap) or allow unprivileged user namespaces")
    if mode == "user" and os.geteuid() != 0:
        return "user mode switches to unprivileged uids, which needs root: run the grader as root"
    if mode == "user" and not shutil.which("setpriv"):
        return "user mode needs setpriv (util-linux): apt-get install util-linux"
    return ""


def probed(mode: str) -> probe.Probed:
    """The probe of ``mode`` (its trivial child, and the bounds that held), once per process and setting."""
    key = (mode, probe.key(mode))
    if key not in _CHOSEN:
        problem = _precondition(mode)
        _CHOSEN[key] = probe.Probed(mode, problem) if problem else probe.probe(mode, probe_child)
    return _CHOSEN[key]


def probe_child(mode: str, timeout: float):
    """Run the trivial child of ``mode``: harness.py's ``probe``, no student code."""
    from grading.sandbox.run import run_child
    from grading.sandbox.slots import child_box

    with child_box(mode, {"codebase/gan.py": b""}) as (box, uid):
        argv = harness_argv(mode, box, uid, ["probe"], int(timeout), timeout)
        # its memory trial takes 3.2 GiB: only where a memory cgroup is there to stop it
        env = {**child_env(mode, box), "GRADE_PROBE_MEMORY": "1" if "memory" in Cgroup.roots() else "0",
               "GRADE_PROBE_WATCHED": "1" if mode == "user" else "0"}  # the grader watches user mode's folder
        return run_child(argv, box, timeout, tag=str(uid if uid is not None else "p"),
                         disk=box if mode == "user" else None, env=env), uid


def pick_mode(name: str = "auto", say=None) -> str:
    """The mode to run children in. ``auto`` takes the first of bwrap, user, process (never process as root) whose
    probe succeeds and tells ``say`` (a function of one line) why it passed over the others. Raises SandboxUnavailable, naming the
    fix, if the mode asked for cannot run here. As root, first cleans what killed earlier gradings left of the
    grader's uids, and builds and holds the jail."""
    if name not in (*MODES, "auto"):
        raise SandboxUnavailable(f"unknown sandbox mode {name!r}: expected one of {', '.join(MODES)} or auto")
    if os.geteuid() == 0 and name != "process":
        try:
            for warning in reap_stale():
                (say or _warn)(f"warning: {warning}")
        except (cleanup.CleanupFailed, NoSlot, ValueError, OSError) as error:
            raise SandboxUnavailable(f"the grader's uids cannot be used ({error})") from None
        if problem := prepare_jail():
            if not jail.disabled():
                (say or _warn)(f"warning: no jail ({problem}); user mode shows the host's files")
    if name != "auto":
        result = probed(name)
        if result.problem:
            raise SandboxUnavailable(result.problem)
        return name
    passed = []
    for mode in MODES if os.geteuid() != 0 else MODES[:-1]:  # as root, student code never runs unsandboxed
        result = probed(mode)
        if not result.problem:
            if passed:
                (say or _warn)(f"sandbox: {mode} ({'; '.join(passed)})")
            return mode
        passed.append(f"not {mode}: {result.problem}")
    raise SandboxUnavailable("no sandbox mode can run here: " + "; ".join(passed))


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


def bounds(mode: str) -> list[str]:
    """What bounded the children of ``mode``: only what its probe saw hold."""
    return probed(mode).lines()


def describe(mode: str) -> str:
    """A line for the results: the mode, and where it ran (jail, unprivileged uid)."""
    if mode == "bwrap":
        return "bwrap, as an unprivileged uid" if os.geteuid() == 0 else "bwrap, as the grader's own user"
    if mode == "user":
        return "user, chrooted into the jail" if jail.ready() else "user, without a jail (the host's files visible)"
    return mode
