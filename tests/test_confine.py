"""What every child does to itself before the student's code runs (grading/child/confine.py), and the bounds the
results name (grading/sandbox/probe.py): no network and no keyring of the grader's in any mode, and only bounds
that were seen to hold."""
import ctypes
import os
import platform
import socket
import subprocess

import pytest

from grading import sandbox
from grading.child import bounds
from grading.sandbox import cgroups, probe, slots
from tests.test_grade import FULL, REFERENCE, _by_problem, _grade

_CALLS = {"x86_64": (248, 250), "aarch64": (217, 219)}  # add_key, keyctl
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="user mode and uid slots need root")
MODES = [pytest.param("bwrap", marks=pytest.mark.skipif(not sandbox.bubblewrap_version(), reason="no bubblewrap")),
         pytest.param("user", marks=needs_root), "process"]

# A correct gan.py that, at import, reaches for the network and the keyrings; it fails its grading only if one of
# its attempts succeeds.
HOSTILE = REFERENCE + r'''
import ctypes, os, platform, socket
broke = []
for family, kind, address in ((socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", PORT)),
                              (socket.AF_INET, socket.SOCK_DGRAM, ("192.0.2.1", 53)),
                              (socket.AF_INET6, socket.SOCK_STREAM, ("::1", PORT))):
    try:
        with socket.socket(family, kind) as s:
            s.settimeout(2)
            s.connect(address)
            broke.append(f"connected to {address}")
    except OSError:
        pass
for family in (getattr(socket, "AF_NETLINK", None), getattr(socket, "AF_PACKET", None)):
    try:
        socket.socket(family, socket.SOCK_RAW).close()
        broke.append(f"opened a socket of family {family}")
    except (OSError, TypeError):
        pass
add_key, keyctl = {"x86_64": (248, 250), "aarch64": (217, 219)}.get(platform.machine(), (-1, -1))
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
buffer = ctypes.create_string_buffer(4096)
for ring in (-3, -4, -5):  # session, user, user-session keyrings
    size = libc.syscall(ctypes.c_long(keyctl), ctypes.c_long(11), ctypes.c_long(ring), buffer, ctypes.c_long(4096))
    if size > 0:
        broke.append(f"read {size} bytes of key ids in keyring {ring}")
    if libc.syscall(ctypes.c_long(add_key), b"user", b"planted", b"a solution", ctypes.c_long(10),
                    ctypes.c_long(ring)) >= 0:
        broke.append(f"added a key to keyring {ring}")
if broke:
    raise SystemExit("BROKE OUT: " + "; ".join(broke))
'''


@pytest.fixture
def grader_secret():
    """This process (the grader) in a session keyring that holds a secret, as after `su -l` or as a service."""
    calls = _CALLS.get(platform.machine())
    if calls is None:
        pytest.skip("no keyctl numbers for this architecture")
    add_key, keyctl = calls
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(ctypes.c_long(keyctl), ctypes.c_long(1), b"grader-session") < 0:  # KEYCTL_JOIN_SESSION_KEYRING
        pytest.skip("no keyrings here")
    key = libc.syscall(ctypes.c_long(add_key), b"user", b"secret", b"the grader's secret", ctypes.c_long(19),
                       ctypes.c_long(-3))
    assert key > 0
    yield key
    libc.syscall(ctypes.c_long(keyctl), ctypes.c_long(1), None)  # a new anonymous session keyring again


@pytest.mark.parametrize("mode", MODES)
def test_no_child_reaches_the_network_or_a_keyring_in_any_mode(tmp_path, mode, grader_secret):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:  # a service on this machine's loopback
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        source = HOSTILE.replace("PORT", str(server.getsockname()[1]))
        results, _ = _grade(tmp_path, source, mode=mode)
        points, outputs = _by_problem(results)
        assert points == FULL, outputs  # on main at 712f5a9, user and process modes connected; all read the key
        with pytest.raises(BlockingIOError):
            server.accept()
    said = " ".join(results["extra_data"]["bounds"])
    assert "network: none" in said and "keyrings: a new empty session keyring" in said


def test_the_probe_child_and_the_cgroups_use_the_same_budgets():
    assert (bounds.MAX_PIDS, bounds.MEMORY_BYTES, bounds.DISK_BYTES) == \
        (cgroups.MAX_PIDS, cgroups.MEMORY_BYTES, sandbox.TMP_BYTES)


@pytest.mark.skipif("memory" not in sandbox.Cgroup.roots(), reason="no writable memory cgroup")
def test_results_name_a_memory_cap_only_where_it_was_seen_to_hold(monkeypatch):
    # As on a host where the memory cgroup does not hold what it is set to (cgroup v1 with swap): here the limit
    # is set far above what the probe touches, so the probe's processes all keep their memory.
    mode = "process" if os.geteuid() != 0 else "user"
    held = probe.probe(mode, sandbox.modes.probe_child)
    assert "memory: 3 GiB across all its processes (memory cgroup)" in held.lines()
    monkeypatch.setattr(cgroups, "MEMORY_BYTES", 64 << 30)
    monkeypatch.setattr(probe, "_cache_file", lambda mode: None)
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
