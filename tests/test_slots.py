"""The grader's uids on a shared machine (grading/sandbox/slots.py): it touches only uids it owns, and no student
can make a slot impossible to clean for the gradings after theirs."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grading import sandbox
from grading.sandbox import cleanup, slots
from tests.conftest import REFERENCE, needs_root, one_child



def test_the_slot_range_leaves_out_accounts_groups_subordinate_ranges_and_systemds_dynamic_users(monkeypatch):
    span = slots.uid_range()
    for first, end in ((0, 60001), (61184, 65520), (65534, 65536), (524288, 1879048192), (2147352576, 2 ** 32)):
        # system and regular accounts, systemd's dynamic users, nobody, container and foreign ranges
        assert span.stop <= first or span.start >= end
    monkeypatch.setenv("GRADE_UIDS", "65534-65534")  # nobody: an account
    assert not slots.owned(65534)
    monkeypatch.setenv("GRADE_UIDS", "0-10")
    with pytest.raises(ValueError, match="GRADE_UIDS"):
        slots.uid_range()
    monkeypatch.setenv("GRADE_UIDS", "1000-x")
    with pytest.raises(ValueError, match="FIRST-LAST"):
        slots.uid_range()


def test_a_subordinate_range_is_never_a_slot(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADE_UIDS", "2100000000-2100000009")
    subuid = tmp_path / "subuid"
    subuid.write_text("someone:2100000005:65536\n")
    monkeypatch.setattr(slots, "SUBORDINATE", (str(subuid), "/nonexistent/subgid"))
    assert slots.owned(2100000004) and not slots.owned(2100000005)


def _as(uid: int, *argv: str) -> subprocess.Popen:
    return subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv],
                            start_new_session=True)


@needs_root
def test_a_grading_leaves_alone_the_processes_and_files_of_uids_it_does_not_own():
    # 61250: a systemd dynamic user (the old slot range ended at 61255); the last uid of the range: a service
    # that no grader ever held (no lock file of a grader's).
    others = [61250, slots.uid_range()[-1]]
    lock = slots.locks_folder() / str(others[1])
    assert not lock.exists()
    services = [_as(uid, "sleep", "300") for uid in others]
    files = []
    for uid in others:
        path = Path("/dev/shm") / f"service-{uid}-{os.getpid()}"
        path.write_text("a service's state")
        os.chown(path, uid, uid)
        files.append(path)
    try:
        time.sleep(0.3)
        for mode in ("user", "bwrap") if sandbox.bubblewrap_version() else ("user",):
            outputs = one_child(REFERENCE, mode=mode)  # a slot taken, cleaned first and last
            assert isinstance(outputs, dict), outputs
        assert all(service.poll() is None for service in services)  # on main at 712f5a9 61250's was killed
        assert all(path.read_text() == "a service's state" for path in files)
    finally:
        for service in services:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait()
        for path in files:
            path.unlink(missing_ok=True)
        lock.unlink(missing_ok=True)


@needs_root
def test_the_root_pass_removes_what_slots_planted_and_nothing_of_an_account(request):
    import shutil
    import tempfile

    from grading.sandbox import cleanup

    shared = Path(tempfile.mkdtemp())  # a world-writable folder of this test's own, as /tmp is
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    shared.chmod(0o1777)
    with slots.uid_slot() as a, slots.uid_slot() as b:
        def as_(uid: int, code: str) -> None:
            subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "/usr/bin/python3",
                            "-c", code], check=True, cwd="/")

        opened = shared / "open"
        as_(a, f"import os; os.mkdir({str(opened)!r}); os.chmod({str(opened)!r}, 0o777)")
        as_(b, f"import os; os.mkdir({str(opened / 'planted')!r}, 0o700); open({str(opened / 'planted' / 'f')!r}, 'w')")
        as_(65534, f"import os; os.mkdir({str(opened / 'nobodys')!r}, 0o700); open({str(opened / 'nobodys' / 'f')!r}, 'w')")
        with pytest.raises(cleanup.CleanupFailed):  # nobody's folder, an account's, is not the grader's to remove
            cleanup.remove_as(a, shared=(str(shared),), span=slots.uid_range())
        assert not (opened / "planted").exists() and (opened / "nobodys" / "f").exists()
        shutil.rmtree(opened / "nobodys")
        cleanup.remove_as(a, shared=(str(shared),), span=slots.uid_range())
        assert list(shared.iterdir()) == []


@needs_root
def test_shared_memory_given_to_another_uid_is_removed_with_its_creators_slot():
    import ctypes

    from grading.sandbox import cleanup

    with slots.uid_slot() as uid:
        # IPC_PRIVATE, 1 MiB, IPC_CREAT | 0600, then IPC_SET (1) its owner to uid 12345: the creator stays uid
        code = ("import ctypes, struct; libc = ctypes.CDLL(None, use_errno=True); "
                "shm = libc.shmget(0, 1 << 20, 0o1600); buf = ctypes.create_string_buffer(512); "
                "assert libc.shmctl(shm, 2, buf) == 0; struct.pack_into('I', buf, 4, 12345); "  # IPC_STAT; ipc_perm.uid
                "assert libc.shmctl(shm, 1, buf) == 0; print(shm)")  # IPC_SET
        run = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "/usr/bin/python3",
                              "-c", code], capture_output=True, text=True, check=True, cwd="/")
        shm = int(run.stdout)
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            rows = [r.split() for r in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]]
            assert any(r[1] == str(shm) and r[7] == "12345" and r[9] == str(uid) for r in rows)
            cleanup.remove_as(uid, shared=(), span=slots.uid_range())
            rows = [r.split() for r in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]]
            assert not any(r[1] == str(shm) for r in rows)
        finally:
            libc.shmctl(shm, 0, None)  # IPC_RMID, if it is still there


@needs_root
def test_a_zombie_of_a_slot_that_another_process_has_yet_to_reap_does_not_set_the_slot_aside():
    # A grader killed with SIGKILL leaves its children to another process, which reaps them in its own time: a
    # grading that cleans the slot meanwhile sees them dead (it cannot reap them), and must take the slot.
    with slots.uid_slot() as uid:
        parent = subprocess.Popen([sys.executable, "-c", f"""
import os, sys, time
pid = os.fork()
if pid == 0:
    os.setgid({uid}); os.setuid({uid}); os._exit(0)
print(pid, flush=True)
sys.stdin.read()  # reaps it only once told to
os.waitpid(pid, 0)
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            zombie = int(parent.stdout.readline())
            deadline = time.monotonic() + 10
            while (Path("/proc") / str(zombie) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            cleanup.kill_uid(uid)  # on main at aef6e47: CleanupFailed, processes of the uid survived SIGKILL
            assert slots.reap_stale() == []
        finally:
            parent.communicate("", timeout=60)


@needs_root
@pytest.mark.skipif(not sandbox.Cgroup.roots(), reason="no writable cgroups")
def test_a_process_mode_cgroup_just_made_is_left_to_its_grader_and_an_old_empty_one_is_removed():
    fresh, old = sandbox.Cgroup("p"), sandbox.Cgroup("p")  # as two graders in process mode make them
    try:
        for path in old.paths.values():  # as a grader killed an hour ago left it
            os.utime(path, (time.time() - 3600, time.time() - 3600))
        slots.reap_stale()  # what another grading on this machine does first
        # on main at fa4b436 the fresh one was removed too: its child, a moment later, could not join it
        assert fresh.paths and all(path.is_dir() for path in fresh.paths.values())
        assert not any(path.exists() for path in old.paths.values())
    finally:
        fresh.kill()
        old.kill()
