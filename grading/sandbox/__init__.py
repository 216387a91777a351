"""Running untrusted code: one child process per grading (it forks a process per problem: grading/child/workers.py),
isolated in one of three modes (modes.py), each probed before its first grading (probe.py).

    modes.py    bwrap, user, process: each mode's command, and which mode runs here
    probe.py    a trivial child per mode: it must start the grader's side; the bounds it saw hold
    run.py      one child: its session, cgroups, output, result pipe, time limit; stopping them all
    slots.py    the grader's own uids, each child's private folder
    jail.py     the folder tree user mode chroots into, held by every grader that uses it
    cgroups.py  pids and memory cgroups where they are writable
    cleanup.py  removing all a uid left: processes, files, IPC objects, keyrings

In every mode the child gets a minimal environment and rlimits (grading/child/harness.py), leaves the grader's
session keyring and installs a seccomp filter before the student's code runs (grading/child/confine.py), its
processes and memory are capped together by cgroups where they are writable, its output is drained and capped, its
result comes back through a pipe (never a file it could tamper with), and everything it started is killed at the
wall-clock timeout, once it exits, or when the grader gets SIGTERM or SIGINT (``stop``). A uid's slot is cleaned
before it is used and after, so a grader killed with SIGKILL leaves nothing that the next grading would meet.
"""
from grading.sandbox import cleanup, jail, probe
from grading.sandbox.cgroups import MAX_PIDS, MEMORY_BYTES, Cgroup
from grading.sandbox.modes import (MODES, bounds, bubblewrap_argv, bubblewrap_version, child_env,
                                   describe, harness_argv, pick_mode, prepare_jail, probed, python_as_uid,
                                   seen_from_inside)
from grading.sandbox.run import (RESULT_FD, TMP_BYTES, Finished, SandboxUnavailable, become_subreaper,
                                 folder_over_budget, others_can_read, run_child, stop)
from grading.sandbox.slots import LIVE_UIDS, NoSlot, child_box, owned, uid_range

__all__ = ["cleanup", "jail", "probe", "MAX_PIDS", "MEMORY_BYTES", "Cgroup", "MODES", "bounds", "bubblewrap_argv",
           "bubblewrap_version", "child_env", "describe", "harness_argv", "pick_mode", "prepare_jail", "probed",
           "python_as_uid", "seen_from_inside", "RESULT_FD", "TMP_BYTES", "Finished", "SandboxUnavailable",
           "become_subreaper", "folder_over_budget", "others_can_read", "run_child", "stop", "LIVE_UIDS", "NoSlot",
           "child_box", "owned", "uid_range"]
