"""What every child does to itself before the student's code runs (grading/child/confine.py), and the bounds the
results name (grading/sandbox/probe.py): only bounds that were seen to hold. That no child reaches the network or a
keyring of the grader's, in any mode, is tests/test_hostile.py's."""
import os
import platform
import subprocess
import threading
import time

import pytest

from grading import sandbox
from grading.child import bounds
from grading.sandbox import cgroups, probe, slots

_CALLS = {"x86_64": (248, 250), "aarch64": (217, 219)}  # add_key, keyctl


def test_the_probe_child_and_the_cgroups_use_the_same_budgets():
    assert (bounds.MAX_PIDS, bounds.MEMORY_BYTES, bounds.DISK_BYTES) == \
        (cgroups.MAX_PIDS, cgroups.MEMORY_BYTES, sandbox.TMP_BYTES)


@pytest.mark.skipif("memory" not in sandbox.Cgroup.roots(), reason="no writable memory cgroup")
def test_results_name_a_memory_cap_only_where_it_was_seen_to_hold(monkeypatch):
    # As on a host where the memory cgroup does not hold what it is set to (cgroup v1 with swap): here the limit
    # is set far above what the probe touches, so the probe's processes all keep their memory.
    mode = "process" if os.geteuid() != 0 else "user"
    if mode == "user":
        sandbox.prepare_jail()  # as every grading in user mode does first (another version may have removed it)
    held = probe.probe(mode, sandbox.modes.probe_child)
    assert "memory: 3 GiB across all its processes (memory cgroup)" in held.lines()
    monkeypatch.setattr(cgroups, "MEMORY_BYTES", 64 << 30)
    monkeypatch.setattr(probe, "cache_file", lambda mode: None)
    loose = probe.probe(mode, sandbox.modes.probe_child)
    assert not loose.problem and not any("memory cgroup" in line for line in loose.lines())
    assert any("RLIMIT_AS" in line for line in loose.lines())


@pytest.mark.skipif(os.geteuid() != 0 or platform.machine() not in _CALLS or not os.path.exists("/usr/bin/python3"),
                    reason="needs root, keyctl numbers for this machine and the system's Python")
def test_keys_a_uid_left_in_its_user_keyring_are_cleared_with_its_slot():
    add_key, keyctl = _CALLS[platform.machine()]
    script = f"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
if sys.argv[1] == "plant":
    assert libc.syscall({add_key}, b"user", b"left", b"for the next child", 18, -4) > 0
buffer = ctypes.create_string_buffer(4096)
print(libc.syscall({keyctl}, 11, -4, buffer, 4096))  # KEYCTL_READ of the user keyring: bytes of key ids
"""
    from grading.sandbox import cleanup

    with slots.uid_slot() as uid:
        def as_uid(step: str) -> int:
            run = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                                  "/usr/bin/python3", "-c", script, step], capture_output=True, text=True, cwd="/")
            assert run.returncode == 0, run.stderr
            return int(run.stdout)

        assert as_uid("plant") > 0
        cleanup.remove_as(uid, shared=())  # on main at 712f5a9 the key stayed for the uid's next child
        assert as_uid("read") == 0


def test_where_no_filter_could_be_installed_the_results_say_the_network_is_not_cut_off():
    unfiltered = probe.Probed("user", held={"network": False, "keyrings": True},
                              confined={"filter": "no libseccomp binding (ImportError)", "keyring": ""})
    lines = unfiltered.lines()
    assert any(line.startswith("network: NOT cut off") and "pyseccomp" in line for line in lines)
    assert "keyrings: a new empty session keyring" in lines


def test_a_probe_is_kept_for_a_while_and_expired_ones_are_removed(tmp_path, monkeypatch):
    from grading.child import ready
    from grading.sandbox.run import Finished

    trials = []

    def trial(mode, timeout):  # a trial child that says it is ready and that the network bound held
        trials.append(mode)
        said = ready.line({"filter": "", "keyring": ""}) + b'{"bound": "network", "held": true, "detail": ""}\n'
        return Finished(0, False, "", result=said), None

    monkeypatch.setattr(probe, "cache_file", lambda mode: tmp_path / f"{mode}-current.json")
    expired, other = tmp_path / "bwrap-0123.json", tmp_path / "user-4567.json"  # other keys: versions, boots
    for path, age in ((expired, probe.PROBE_SECONDS + 3600), (expired.with_suffix(".lock"), probe.PROBE_SECONDS + 3600),
                      (other, 60)):
        path.write_text("{}")
        os.utime(path, (path.stat().st_atime, path.stat().st_mtime - age))
    first = probe.probe("process", trial)
    assert probe.probe("process", trial) == first and trials == ["process"]  # kept: probed once
    assert first.held == {"network": True} and "network: none, only local sockets (seccomp filter)" in first.lines()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["process-current.json", "process-current.lock",
                                                          "user-4567.json"]


def test_graders_that_start_at_once_probe_a_mode_once(tmp_path, monkeypatch):
    # a class run's first gradings (--jobs) and graders side by side all found no kept probe, and each probed
    from grading.child import ready
    from grading.sandbox.run import Finished

    trials = []

    def trial(mode, timeout):
        trials.append(mode)
        time.sleep(1)  # the others start meanwhile
        return Finished(0, False, "", result=ready.line({"filter": "", "keyring": ""})), None

    monkeypatch.setattr(probe, "cache_file", lambda mode: tmp_path / f"{mode}-current.json")
    found = []
    graders = [threading.Thread(target=lambda: found.append(probe.probe("process", trial))) for _ in range(3)]
    for grader in graders:
        grader.start()
    for grader in graders:
        grader.join()
    assert trials == ["process"] and len(found) == 3 and found[0] == found[1] == found[2]


def test_a_probe_is_kept_for_what_changes_its_bounds_only(monkeypatch):
    # the uids a grading takes change none of its bounds; the jail, the cgroups and the mode do
    key = probe.key("user")
    monkeypatch.setenv("GRADE_UIDS", "2100000000-2100000009")
    assert probe.key("user") == key
    monkeypatch.setenv("GRADE_CGROUPS", "off")
    assert probe.key("user") != key and probe.key("process") != probe.key("user")

