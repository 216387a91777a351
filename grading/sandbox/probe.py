"""Probing a sandbox mode before the first grading: a trivial child (harness.py's ``probe``: no student code)
must start the grader's side and say so, then try each bound (grading/child/bounds.py). Only the bounds it saw
hold are named in the results.

A probe costs a few seconds (it imports torch and touches more memory than a child may hold), so a success is
kept for PROBE_SECONDS in a private folder, keyed by everything it depends on (the mode, the grader's sandbox and
child code, this Python, the uid, the boot, the jail, the cgroups, the settings). ``forget`` drops it when a
grading's child fails before it is ready, so the next grading probes again.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from grading.child.ready import split as split_ready
from grading.sandbox import jail
from grading.sandbox.cgroups import MAX_PIDS, MEMORY_BYTES, Cgroup
from grading.sandbox.run import DISK_CHECK_SECONDS

PROBE_SECONDS = 600.0
TIMEOUT = 120.0
_HERE = Path(__file__).resolve().parent


@dataclass
class Probed:
    mode: str
    problem: str = ""  # why the mode cannot run here, naming the fix; "" if it can
    held: dict[str, bool] = field(default_factory=dict)  # bound -> whether it held
    cgroups: list[str] = field(default_factory=list)  # the cgroup controllers the child was in
    confined: dict[str, str] = field(default_factory=dict)  # the ready line's facts: keyring, filter, torch

    def lines(self) -> list[str]:
        """The bounds that held, as the results name them."""
        held, lines = self.held, []
        filtered = self.confined.get("filter") == ""
        if self.mode == "bwrap" and held.get("network"):
            lines.append("network: none (its own network namespace" + ("; other sockets refused by seccomp)"
                                                                       if filtered else ")"))
        elif held.get("network"):
            lines.append("network: none, only local sockets (seccomp filter)")
        else:
            lines.append("network: NOT cut off (no seccomp filter: " +
                         (self.confined.get("filter") or "?") + "; pip install pyseccomp)")
        if held.get("keyrings") and self.confined.get("keyring") == "":
            lines.append("keyrings: a new empty session keyring" + ("; keyring calls refused (seccomp)"
                                                                    if filtered else ""))
        elif held.get("keyrings"):
            lines.append("keyrings: none reachable (the keyring calls are refused here)")
        if held.get("processes"):
            lines.append(f"processes: at most {MAX_PIDS} in all (pids cgroup)" if "pids" in self.cgroups else
                         f"processes: at most {MAX_PIDS} for its uid (RLIMIT_NPROC)")
        if held.get("memory"):
            lines.append(f"memory: {MEMORY_BYTES >> 30} GiB across all its processes (memory cgroup)")
        elif held.get("address space"):
            lines.append("memory: 6 GiB of address space per process (RLIMIT_AS), no cap across its processes")
        mib = 64
        if self.mode == "bwrap" and all(held.get(f"disk {p}") for p in ("/tmp", "/dev/shm", ".")):
            lines.append(f"disk: /tmp, /dev/shm and /work {mib} MiB each (tmpfs)")
        elif self.mode == "user" and held.get("disk . watched"):
            shared = [p for p in ("/tmp", "/dev/shm") if f"disk {p}" in held]
            lines.append(f"disk: its folder, {mib} MiB (checked every {DISK_CHECK_SECONDS:g} s or more)" + (
                f"; {', '.join(shared)} writable, their files removed afterwards" if shared else
                "; nothing else is writable"))
        return lines


def probe(mode: str, run) -> Probed:
    """The probe of ``mode``, from the cache or by ``run(mode, timeout) -> (Finished, uid)``. Graders that start
    at once (a class run's first gradings, graders side by side) probe a mode once: the others wait on a lock
    beside the kept probe (for at most the probe's TIMEOUT and a margin), then read it."""
    cached = cache_file(mode)
    if (kept := _kept(cached)) is not None:
        return kept
    lock = _lock(cached) if cached else None
    try:
        if (kept := _kept(cached)) is not None:  # probed by the grader that held the lock
            return kept
        return _probe_and_keep(mode, run, cached)
    finally:
        if lock is not None:
            lock.close()


def _lock(cached: Path):
    """The lock of the probe kept at ``cached``, taken (open), or None once TIMEOUT and a margin have passed
    without it (its holder stopped: this grader probes too) or where it cannot be opened."""
    try:
        lock = open(cached.with_suffix(".lock"), "a")
    except OSError:
        return None
    deadline = time.monotonic() + TIMEOUT + 30
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.utime(lock.fileno())  # when it was last taken: _drop_expired removes only old ones
            return lock
        except BlockingIOError:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        except OSError:
            break
    lock.close()
    return None


def _kept(cached: Path | None) -> Probed | None:
    try:
        saved = json.loads(cached.read_text()) if cached else None
        if saved and time.time() - saved.pop("time") < PROBE_SECONDS:
            return Probed(**saved)
    except (OSError, ValueError, TypeError, KeyError):
        pass
    return None


def _probe_and_keep(mode: str, run, cached: Path | None) -> Probed:
    result = _run(mode, run)
    if cached and not result.problem:  # a failure is probed again: it may be passing (a grader being stopped)
        tmp = cached.with_name(cached.name + f".{os.getpid()}")
        try:
            tmp.write_text(json.dumps({"time": time.time(), **result.__dict__}))
            os.replace(tmp, cached)
        except OSError:
            pass
        _drop_expired(cached.parent)
    return result


def _drop_expired(folder: Path) -> None:
    """Remove the probes kept longer than PROBE_SECONDS (of any key: other versions, other boots), never read again,
    and their locks (none is held that long: a probe ends within its TIMEOUT)."""
    for path in [*folder.glob("*.json"), *folder.glob("*.lock")]:
        try:
            if time.time() - path.stat().st_mtime > PROBE_SECONDS + 60:
                path.unlink()
        except OSError:
            pass


def forget(mode: str) -> None:
    """Drop the kept probe of ``mode``: a child failed before it was ready."""
    cached = cache_file(mode)
    if cached:
        try:
            cached.unlink()
        except OSError:
            pass


def _run(mode: str, run) -> Probed:
    from grading.sandbox import cleanup
    from grading.sandbox.slots import NoSlot

    try:
        finished, uid = run(mode, TIMEOUT)
    except (OSError, NoSlot, cleanup.CleanupFailed, RuntimeError) as error:
        return Probed(mode, f"its trial child could not be started ({error})")
    facts, rest = split_ready(finished.result or b"")
    if facts is None:
        said = [line for line in finished.output.strip().splitlines() if line.strip()]
        return Probed(mode, "its trial child could not start the grader's own code (" +
                      (said[-1][:300] if said else f"exit status {finished.returncode}") + "): " + _fix(mode))
    held = {}
    for line in rest.splitlines()[:64]:
        try:
            entry = json.loads(line)
            held[str(entry["bound"])] = bool(entry["held"])
        except (ValueError, KeyError, TypeError):
            continue
    if mode == "user" and finished.over_budget and "disk ." in held:
        held["disk . watched"] = True  # killed for what it wrote to its folder
    if "memory" not in held and finished.oom_killed:
        held["memory"] = True
    cgroups = sorted(Cgroup.roots())
    return Probed(mode, "", held, cgroups, facts)


def _fix(mode: str) -> str:
    if mode == "user":
        return ("make this Python and its packages readable by other users (install them under /usr or /usr/local), "
                "or build the jail as root: python -m grading prepare")
    if mode == "bwrap":
        return "make this Python readable by other users, or build the jail as root: python -m grading prepare"
    return "check that this Python imports torch"


def cache_file(mode: str) -> Path | None:
    """Where the probe of ``mode`` is kept, in a folder of this user's alone, or None."""
    if os.geteuid() == 0:
        folder = jail.STATE / "probes"
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "grade-sandbox"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            return None
    except OSError:
        return None
    return folder / f"{mode}-{key(mode)}.json"


def key(mode: str) -> str:
    """A digest of everything the probe of ``mode`` depends on."""
    digest = hashlib.sha256()
    for path in sorted([*_HERE.glob("*.py"), *(_HERE.parent / "child").glob("*.py")]):
        digest.update(path.name.encode() + path.read_bytes())
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text()
    except OSError:
        boot = ""
    jail_path = jail.ready() if mode != "process" else None  # process mode runs this Python, never the jail's
    settings = [os.environ.get(k, "") for k in ("GRADE_JAIL", "GRADE_CGROUPS")]  # (which uids: the same bounds)
    # whether other users may enter the folders above this Python, where user and bwrap modes' uids run it (no
    # jail): the same path may be private here and open in another mount namespace
    reach = [os.stat(folder).st_mode & 0o777 for folder in Path(sys.base_prefix).resolve().parents
             ] if mode != "process" and jail_path is None else []
    digest.update(json.dumps([mode, sys.executable, sys.version, os.geteuid(), boot, str(jail_path),
                              sorted(Cgroup.roots()), settings, reach]).encode())
    return digest.hexdigest()[:20]
