"""The sandbox's budgets and cleanup (grading/sandbox): one budget per child (disk, memory), trees removed however
deep, a killed grader's leftovers removed by the next grading, a jail without privileges, and no points without a
working loss. One hostile submission graded in every mode is tests/test_hostile.py's.

The gradings here need root (user mode's uids) and bubblewrap; each test says why when it is skipped.
"""
import contextlib
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from grading import checks, sandbox
from grading.child import probes
from grading.sandbox import cgroups, cleanup, jail, slots
from tests.conftest import GRADE, REFERENCE, ROOT, Harnesses, leftovers, make_zip, needs_bwrap, needs_root, one_child

needs_memory_cgroup = pytest.mark.skipif("memory" not in sandbox.Cgroup.roots(), reason="no writable memory cgroup")


@needs_root
def test_cleanup_removes_any_tree_as_the_uid_and_nothing_else(request):
    uid = sandbox.uid_range()[-1]
    top = Path(tempfile.mkdtemp())  # not under pytest's folder: the uid must reach it
    request.addfinalizer(lambda: shutil.rmtree(top, ignore_errors=True))
    top.chmod(0o755)
    shared = top / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = top / "victim"  # root's: a symbolic link to it must not make the cleanup remove it
    victim.mkdir()
    (victim / "keep").write_text("root's")
    script = f"""
import os
os.chdir({str(shared)!r})
os.mkdir("deep"); os.chdir("deep")
for _ in range(2000):
    os.mkdir("d" * 100); os.chdir("d" * 100)
open("leaf", "w").close()
os.chdir({str(shared)!r})
os.mkdir("locked"); open("locked/a", "w").close(); os.chmod("locked", 0)
os.symlink({str(victim)!r}, "link"); os.symlink({str(victim / 'keep')!r}, "link2")
"""
    subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "/usr/bin/python3", "-c",
                    script], check=True)
    (shared / "roots").write_text("root's own file in the shared folder")
    cleanup.remove_as(uid, shared=(str(shared),))
    assert sorted(p.name for p in shared.iterdir()) == ["roots"]
    assert (victim / "keep").read_text() == "root's"



def test_a_folder_is_measured_by_reading_each_entry_once_however_it_is_nested(tmp_path, monkeypatch):
    # user mode's disk budget walks a child's folder every few tenths of a second: on main at 730caab each return
    # from a subfolder listed its parent again, so 2,000 empty subfolders cost 2 million names read per walk
    (tmp_path / "wide").mkdir()
    for i in range(2000):
        (tmp_path / "wide" / str(i)).mkdir()
    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "f").write_bytes(bytes(70000))
    fd = os.open(deep, os.O_RDONLY)
    for _ in range(300):
        os.mkdir("d", dir_fd=fd)
        deeper = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    os.close(fd)
    (tmp_path / "link").symlink_to(tmp_path / "wide")
    entries, blocks = 0, 0
    for folder, dirs, files in os.walk(tmp_path):
        for name in dirs + files:
            entries += 1
            blocks += os.lstat(os.path.join(folder, name)).st_blocks
    read = []
    scandir = os.scandir

    def counting(fd):
        for entry in scandir(fd):
            read.append(entry.name)
            yield entry

    monkeypatch.setattr(os, "scandir", lambda fd: contextlib.closing(counting(fd)))
    assert cleanup.usage(str(tmp_path), 10_000) == (blocks * 512, entries)
    assert len(read) == entries
    read.clear()
    assert cleanup.usage(str(tmp_path), 1000)[1] == 1001  # past the cap: counted no further
    assert len(read) == 1001

def test_a_stub_that_draws_well_but_computes_no_loss_earns_nothing(tmp_path):
    path = tmp_path / "gan.py"
    path.write_text('''
import torch

def _draws(g, d, x_real, y=None):
    z = torch.randn(x_real.shape[0], g.dim_z)
    x_fake = g(z) if y is None else g(z, y)
    alpha = torch.rand(x_real.shape[0], 1, 1, 1)
    d(alpha * x_real + (1 - alpha) * x_fake.detach())  # interpolates, as a correct penalty would evaluate
    zero = (x_fake.sum() + d(x_real).sum()) * 0
    return zero, zero

def loss_nonsaturating(g, d, x_real, *, device):
    return _draws(g, d, x_real)

def conditional_loss_nonsaturating(g, d, x_real, y_real, *, device):
    return _draws(g, d, x_real, y_real)

def loss_wasserstein_gp(g, d, x_real, *, device):
    return _draws(g, d, x_real)
''')
    module = probes.load_module(path, "stub_draws_well")
    for problem in checks.PROBLEMS:
        earned = [check.points for check, message in checks.evaluate(problem, probes.run(module, problem))
                  if message is None]
        assert sum(earned) == 0, problem


@needs_root
def test_each_childs_folder_is_private_and_its_mode_is_not_the_childs_to_change():
    sandbox.pick_mode("user")
    with sandbox.child_box("user", {"codebase/gan.py": b"x = 1\n"}) as (box, uid):
        info = box.stat()
        # root's, of the uid's group: the child writes in it, cannot chmod it, and no other uid enters it
        assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o770, 0, uid)
        assert all(p.stat().st_uid == uid for p in box.rglob("*"))
        chmod = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "chmod", "777",
                                str(box)], capture_output=True)
        assert chmod.returncode != 0 and stat.S_IMODE(box.stat().st_mode) == 0o770
    assert not box.exists()


@needs_root
@needs_bwrap
def test_bwrap_caps_every_writable_place_and_the_memory_of_all_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(cgroups, "MEMORY_BYTES", 3 << 29)  # 1.5 GiB rather than the default 3 GiB, to test fast
    source = REFERENCE + r'''
import os
written = {}
for place in ("/tmp", "/dev/shm", "."):
    total = 0
    try:
        with open(os.path.join(place, "fill"), "wb") as f:
            for _ in range(200):
                f.write(bytes(1 << 20))
                f.flush()
                total += 1 << 20
    except OSError:
        pass
    written[place] = total >> 20
    os.unlink(os.path.join(place, "fill"))
if max(written.values()) > 64:
    raise SystemExit(f"BROKE OUT: wrote {written} MiB")
'''
    if "memory" in sandbox.Cgroup.roots():
        source += r'''
children = []
for _ in range(4):  # 2.8 GiB touched in all, above the child's 1.5 GiB: not every one may finish
    pid = os.fork()
    if pid == 0:
        block = bytearray(700 << 20)
        block[::4096] = b"x" * len(block[::4096])
        os._exit(0)
    children.append(pid)
finished = sum(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0 for pid in children)
if finished == 4:
    raise SystemExit("BROKE OUT: 2.8 GiB touched")
'''
    outputs = one_child(source, mode="bwrap")  # one problem's child: the budgets are each child's
    assert isinstance(outputs, dict), outputs
    assert [message for _, message in checks.evaluate("1.2", outputs)] == [None] * len(checks.PROBLEMS["1.2"].checks)


@needs_root
def test_user_mode_stops_a_child_that_fills_its_folder(tmp_path):
    source = REFERENCE + r'''
for i in range(100):  # files of 8 MiB, each under the 64 MiB a file may hold: 800 MiB in all
    with open(f"fill{i}", "wb") as f:
        for _ in range(8):
            f.write(bytes(1 << 20))
            f.flush()
'''
    sandbox.pick_mode("user")
    with Harnesses(os.getpid()) as seen:
        said = one_child(source, mode="user")  # one problem's child: what a grading does with each
    assert isinstance(said, str) and "writing too much to disk" in said, said
    assert seen.uids and not leftovers(seen.uids, seen.cgroups)


@needs_root
def test_a_grader_killed_with_sigkill_leaves_nothing_for_the_next_grading(tmp_path, monkeypatch):
    source = REFERENCE + "\nimport time\ntime.sleep(600)\n"
    path = make_zip(tmp_path / "hw3.zip", {"codebase/gan.py": source})
    # uids of this test's alone, outside the default range: what it leaves on purpose, until it cleans it, is no
    # other grading's (tests running beside it check that theirs leave nothing)
    first = 2_000_100_000 + os.getpid() % 10_000 * 8
    monkeypatch.setenv("GRADE_UIDS", f"{first}-{first + 7}")
    grader = subprocess.Popen([*GRADE, str(path), "-o", str(tmp_path / "r.json"),
                               "--sandbox", "user"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with Harnesses(grader.pid) as seen:  # its children only: other graders may run on this machine
        deadline = time.monotonic() + 60
        while len(seen.forks) < 3 and time.monotonic() < deadline:  # each problem's process
            time.sleep(0.1)
    grader.send_signal(signal.SIGKILL)
    grader.wait()
    assert len(seen.pids) == 1 and len(seen.forks) == 3 and seen.uids - {0}  # one child, slot uids, never root
    assert leftovers(seen.uids, seen.cgroups)  # the children outlive their grader, with their folders
    sandbox.pick_mode("user")  # what every grading does first
    assert not leftovers(seen.uids, seen.cgroups)


def test_process_mode_removes_a_folder_tree_deeper_than_pythons_recursion_limit(tmp_path, monkeypatch):
    made = []
    source = REFERENCE + r'''
import os
fd = os.open(".", os.O_RDONLY)
for _ in range(1500):
    os.mkdir("d", dir_fd=fd)
    deeper = os.open("d", os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = deeper
'''
    sandbox.pick_mode("process")  # the mode's probe (a child folder of its own) before the folders are counted
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the children's folders, where this test can see them
    create = slots.tempfile.mkdtemp
    monkeypatch.setattr(slots.tempfile, "mkdtemp", lambda **kw: made.append(create(**kw)) or made[-1])
    outputs = one_child(source, mode="process")
    assert isinstance(outputs, dict), outputs  # graded as usual
    boxes = [p for p in made if p.startswith(str(tmp_path))]  # (cgroups are made with mkdtemp too)
    assert len(boxes) == 1 and not any(os.path.exists(p) for p in boxes)


@needs_root
def test_the_jail_holds_nothing_that_raises_privileges_or_that_a_child_could_leave_for_the_next():
    root = jail.prepare()
    for folder, dirs, files in os.walk(root):
        if folder == str(root / "work"):  # the children's folders of gradings that may be running now
            dirs.clear()
        for name in dirs + files:
            info = os.lstat(os.path.join(folder, name))
            if stat.S_ISLNK(info.st_mode) or stat.S_ISCHR(info.st_mode):  # links, and /dev's null, zero, random
                continue
            others = 0o022 if stat.S_ISDIR(info.st_mode) else 0o002  # files: a conda Python's are group-writable
            assert not info.st_mode & (stat.S_ISUID | stat.S_ISGID | others), os.path.join(folder, name)
            assert info.st_uid == 0, os.path.join(folder, name)
    names = {p.name for p in root.iterdir()}
    assert not names & {"home", "tmp", "var", "srv", "mnt", "media", "sys", "run"}
    assert [p.name for p in (root / "proc").iterdir()] == ["cpuinfo"]  # a copy: no process of the host is visible


def test_bubblewrap_options_exist_in_ubuntu_22_04s_bubblewrap_0_6():
    # Every option of bubblewrap 0.6.1's manual (Ubuntu 22.04); --size came in 0.7 and is used only from there.
    known = set("""--args --unshare-user --unshare-user-try --unshare-ipc --unshare-pid --unshare-net --unshare-uts
        --unshare-cgroup --unshare-cgroup-try --unshare-all --share-net --userns --userns2 --pidns --uid --gid
        --hostname --chdir --clearenv --setenv --unsetenv --lock-file --sync-fd --perms --bind --bind-try
        --dev-bind --dev-bind-try --ro-bind --ro-bind-try --remount-ro --exec-label --file-label --proc --dev
        --tmpfs --mqueue --dir --file --bind-data --ro-bind-data --symlink --seccomp --add-seccomp-fd --block-fd
        --userns-block-fd --info-fd --json-status-fd --new-session --die-with-parent --as-pid-1 --cap-add
        --cap-drop""".split())
    old = sandbox.bubblewrap_argv(Path("/tmp/box"), ["python"], version=(0, 6))
    new = sandbox.bubblewrap_argv(Path("/tmp/box"), ["python"], version=(0, 8))
    assert {a for a in old if a.startswith("--")} - {"--"} <= known
    assert {a for a in new if a.startswith("--")} - known - {"--"} == {"--size"}
