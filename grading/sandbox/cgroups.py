"""The cgroups of one grading child: its processes and memory capped together, and all of it killed at once.

Where cgroups are writable (a VM, a root shell), a child's processes join a pids cgroup (a fork bomb stops at
MAX_PIDS) and a memory cgroup (all its processes together may use MEMORY_BYTES, its tmpfs mounts included). In
Docker they are not writable: ``Cgroup`` is then a no-op, and the rlimits of harness.py are the only bounds.
Whether a bound holds is not assumed: the mode's probe (probe.py) tries to exceed it before the results name it.
"""
from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

from grading.sandbox.cleanup import CleanupFailed

MAX_PIDS = 128  # processes and threads a child may have at once
MEMORY_BYTES = 3 << 30  # memory of all a child's processes together, where a memory cgroup is writable


class Cgroup:
    """The pids and memory cgroups (v2, or v1's hierarchies) of one child: a fork bomb stops at MAX_PIDS, and its
    processes together may use MEMORY_BYTES; a no-op where cgroups are not writable (Docker), or when
    GRADE_CGROUPS=off (to try the grader as it runs there). ``kill()`` ends every process in them."""

    V2, V1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup")

    @classmethod
    def roots(cls) -> dict[str, Path]:
        """The writable hierarchy of each controller: {"pids": path, "memory": path}, those that exist."""
        if os.environ.get("GRADE_CGROUPS") == "off":
            return {}
        found = {}
        controllers = cls.V2 / "cgroup.controllers"
        if controllers.is_file():
            available = controllers.read_text().split()
            enabled = (cls.V2 / "cgroup.subtree_control").read_text().split()
            for name in ("pids", "memory"):
                if name in available and name not in enabled:
                    try:
                        (cls.V2 / "cgroup.subtree_control").write_text(f"+{name}")
                        enabled.append(name)
                    except OSError:
                        pass
                if name in enabled and os.access(cls.V2, os.W_OK):
                    found[name] = cls.V2
            return found
        for name in ("pids", "memory"):
            root = cls.V1 / name
            if (root / "cgroup.procs").is_file() and os.access(root, os.W_OK):
                found[name] = root
        return found

    @classmethod
    def root(cls) -> Path | None:
        """The writable pids hierarchy, if there is one."""
        return cls.roots().get("pids")

    def __init__(self, tag: str = "p"):
        self.paths: dict[str, Path] = {}
        for name, root in self.roots().items():
            try:
                path = Path(tempfile.mkdtemp(prefix=f"grade-{tag}-", dir=root))
            except OSError:
                continue
            try:
                if name == "pids":
                    (path / "pids.max").write_text(str(MAX_PIDS))
                elif (path / "memory.max").exists():  # v2
                    (path / "memory.max").write_text(str(MEMORY_BYTES))
                    if (path / "memory.swap.max").exists():
                        (path / "memory.swap.max").write_text("0")
                else:  # v1
                    (path / "memory.limit_in_bytes").write_text(str(MEMORY_BYTES))
                    if (path / "memory.memsw.limit_in_bytes").exists():
                        (path / "memory.memsw.limit_in_bytes").write_text(str(MEMORY_BYTES))
                    else:  # no swap accounting: without this, the limit only pushes pages to swap
                        (path / "memory.swappiness").write_text("0")
                self.paths[name] = path
            except OSError:
                remove_cgroup(path)
        # v2: one folder holds both controllers
        self.procs = list(dict.fromkeys(p / "cgroup.procs" for p in self.paths.values()))

    def wrap(self, argv: list[str]) -> list[str]:
        """argv started from inside the cgroups: a shell joins them, then becomes argv, so nothing runs outside."""
        if not self.procs:
            return argv
        joins = " && ".join(f'echo $$ > "${i + 1}"' for i in range(len(self.procs)))
        return ["/bin/sh", "-c", f'{joins} && shift {len(self.procs)} && exec "$@"', "sh",
                *map(str, self.procs), *argv]

    def oom_kills(self) -> int:
        """How many of the child's processes the memory cgroup's out-of-memory killer ended."""
        path = self.paths.get("memory")
        for name in ("memory.events", "memory.oom_control"):  # v2, v1
            try:
                for line in (path / name).read_text().splitlines() if path else ():
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
            except (OSError, ValueError):
                continue
        return 0

    def bounds(self) -> list[str]:
        held = []
        if "pids" in self.paths:
            held.append(f"processes: at most {MAX_PIDS} in all (pids cgroup)")
        if "memory" in self.paths:
            held.append(f"memory: {MEMORY_BYTES >> 30} GiB across all its processes (memory cgroup)")
        return held

    def kill(self) -> None:
        for path in set(self.paths.values()):
            remove_cgroup(path)
        self.paths = {}


def remove_cgroup(path: Path) -> None:
    """Kill every process in the cgroup at ``path``, then remove it."""
    for _ in range(100):
        try:
            pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except OSError:
            break
        if not pids:
            break
        for pid in pids:
            kill_and_reap(pid)
        time.sleep(0.02)
    for _ in range(100):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)
    raise CleanupFailed(f"the cgroup {path} could not be removed")


def kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, os.WNOHANG)  # orphans come to this process (a subreaper): reap them
    except (ProcessLookupError, ChildProcessError, PermissionError):
        pass
