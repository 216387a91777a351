"""One hostile, correct gan.py graded once per sandbox mode, as a deployment runs the grader, and read by every test
of what the sandbox must hold: full marks (it fails its grading if any attempt succeeds), never host root, no
network and no keyring of the grader's, nothing of the grader, the host or other gradings readable or writable,
no daemon or file left behind, and every uid slot clean for the next grading.

At import the submission tries, in each problem's process: to write /proc/sys, to read the grader's files, a world-readable
course checkout elsewhere, /etc/hostname and this test's own command line, to write the grader's files, its
results and other gradings' gan.py, to write into the pipes of the process that forked it (the other problems'
processes run as its uid), to list the other gradings' folders, to fork more processes than the cap (in
one problem's), to leave a set-uid Python, a tree deeper than Python's recursion limit, System V IPC objects and files
in the shared temporary folders, to make folders other children could plant undeletable trees in (and plant
them), to connect to a loopback service and the network, to open raw sockets, to read and write the keyrings, and
to leave a daemon that waits for the grading to end. Process mode (trusted code only) is held to what it
promises: no network, no keyring, the process cap.
"""
from __future__ import annotations

import ctypes
import json
import os
import platform
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from grading import sandbox
from grading.sandbox import slots
from tests.conftest import (FULL, GRIDS, REFERENCE, ROOT, UNJUDGED, Harnesses, alive, assert_complete, by_problem,
                            leftovers, make_zip, needs_bwrap, needs_root)

pytestmark = pytest.mark.xdist_group("hostile")  # one worker runs the module: its tests share its gradings

_CALLS = {"x86_64": (248, 250), "aarch64": (217, 219)}  # add_key, keyctl
SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm")

MODES = [
    pytest.param(("process", {}), id="process"),
    pytest.param(("bwrap", {}), marks=[needs_root, needs_bwrap], id="bwrap"),
    # user mode where it runs: in Docker (Gradescope), with the jail and no writable cgroups; on a host where the
    # jail is off, with cgroups. Each is there once and missing once (both at once: test_sandbox.py's gradings).
    pytest.param(("user", {"GRADE_CGROUPS": "off"}), marks=needs_root, id="user-docker"),
    pytest.param(("user", {"GRADE_JAIL": "off"}), marks=needs_root, id="user-without-jail"),
]

# Each attempt appends to `broke` where it succeeds; the submission then fails its grading, saying what broke.
HOSTILE = REFERENCE + r'''
import ctypes, glob, json, os, platform, shutil, socket, sys, tempfile, time
from pathlib import Path

PLAN = json.loads(PLAN_JSON)
broke = []
for family, kind, address in ((socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", PLAN["port"])),
                              (socket.AF_INET, socket.SOCK_DGRAM, ("192.0.2.1", 53)),
                              (socket.AF_INET6, socket.SOCK_STREAM, ("::1", PLAN["port"]))):
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
if PLAN["max_processes"] and sys.argv[2:3] == ["4.5"]:  # in one problem's child (harness.py's argv names it): a
    # fork bomb, stopped at the cap, then ended by itself so that the probes can run
    forked = []
    for _ in range(400):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        forked.append(pid)
    for pid in forked:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    if len(forked) >= PLAN["max_processes"]:
        broke.append(f"made {len(forked)} processes")
if PLAN["confined"]:
    for path in ("/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches"):
        try:
            value = open(path).read() if "core" in path else "0"
            with open(path, "w") as f:
                f.write(value)  # a no-op write, where it is allowed at all
            broke.append("wrote " + path)
        except OSError:
            pass
    for path in PLAN["unreadable"]:
        try:
            open(path, "rb").close()
            broke.append("read " + path)
        except OSError:
            pass
    for path in PLAN["unwritable"] + glob.glob("/tmp/grade-*/*/codebase/gan.py"):
        try:
            with open(path, "a") as f:
                f.write("\nraise SystemExit")
            broke.append("wrote " + path)
        except OSError:
            pass
    for fd in glob.glob(f"/proc/{os.getppid()}/fd/*"):  # the grading child's pipes, its results to the grader among
        try:                                              # them (the other problems' processes, the same uid)
            with open(fd, "wb") as f:
                f.write(b"GRADE-PROBLEM forged\n")
            broke.append("wrote " + fd)
        except OSError:
            pass
    box = Path(__file__).resolve().parents[1]
    for other in [box.parent] * (box.parent != Path("/")) + [box.with_name(str(int(box.name) + k))
                                                             for k in (-2, -1, 1, 2) if box.name.isdigit()]:
        try:  # the folder of the children's folders, and the other problems' folders in it
            list(other.iterdir())
            broke.append("listed " + str(other))
        except OSError:
            pass
    places = [Path.cwd(), Path(tempfile.gettempdir())] + [Path(p) for p in PLAN["shared"] if os.access(p, os.W_OK)]
    for place in places:
        try:
            suid = place / f"suid-{os.getpid()}"
            shutil.copyfile(sys.executable, suid)
            os.chmod(suid, 0o4755)
            if place not in (places[0], places[-1]):  # its own folder, and one shared with others
                continue
            chain = place / f"deep-{os.getpid()}"
            chain.mkdir()
            fd = os.open(chain, os.O_RDONLY)
            for _ in range(1500):  # deeper than Python's recursion limit
                os.mkdir("d", dir_fd=fd)
                deeper = os.open("d", os.O_RDONLY, dir_fd=fd)
                os.close(fd)
                fd = deeper
            os.close(os.open("leaf", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
        except OSError:
            pass
    libc.shmget(0, 16 << 20, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600: 16 MiB that outlive the process
    libc.semget(0, 1, 0o1600)
    libc.msgget(0, 0o1600)
    for folder in [os.getcwd(), os.path.dirname(os.getcwd())]:
        try:
            os.chmod(folder, 0o777)  # its own folder open to the other children of this submission
        except OSError:
            pass
    for folder in PLAN["shared"]:
        try:  # a folder open to every uid, where the other children of this submission plant theirs
            os.mkdir(os.path.join(folder, f"open-{os.getuid()}"), 0o777)
            os.chmod(os.path.join(folder, f"open-{os.getuid()}"), 0o777)
        except OSError:
            pass
    time.sleep(1)  # the other children, started at the same time, have made theirs
    for folder in glob.glob(os.path.dirname(os.getcwd()) + "/*") + glob.glob("/tmp/open-*") + \
            glob.glob("/dev/shm/open-*") + PLAN["shared"]:
        try:
            planted = os.path.join(folder, f"planted-{os.getuid()}")
            os.mkdir(planted, 0o700)
            open(os.path.join(planted, "f"), "w").close()
            os.chmod(planted, 0o500)
        except OSError:
            pass
harness = os.getpid()
try:
    daemon = os.fork()
except OSError:  # the uid's processes all taken, by the fork bomb of this grading's 4.5 (the problems share them)
    daemon = -1
if daemon == 0:  # a daemon, out of the process group, that waits for its child's end to write
    os.setsid()
    if os.fork() == 0:
        while os.path.exists(f"/proc/{harness}"):
            time.sleep(0.05)
        for place in PLAN["shared"]:
            try:
                Path(place, "daemon-" + str(os.getpid())).write_text("outlived the grading")
            except OSError:
                pass
        time.sleep(60)
    os._exit(0)
if broke:
    raise SystemExit("BROKE OUT: " + "; ".join(broke))
'''


@dataclass
class Graded:
    mode: str
    env: dict
    results: dict
    uids: set[int]
    alive: list[int]  # grading children still alive once it returned
    reached: bool  # whether the loopback service got a connection
    changed: list[str]  # grader files changed
    leftovers: list[str] = field(default_factory=list)
    planted: list[str] = field(default_factory=list)

    @property
    def outputs(self) -> dict:
        return by_problem(self.results)[1]


@pytest.fixture(scope="module", params=MODES)
def hostile(request, tmp_path_factory, deployment) -> Graded:
    mode, env = request.param
    calls = _CALLS.get(platform.machine())
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    work = Path(tempfile.mkdtemp())  # traversable by every user: a course checkout others may read
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    work.chmod(0o755)
    course = work / "course" / "codebase" / "gan.py"
    course.parent.mkdir(parents=True)
    course.write_text(REFERENCE)
    for path in (course.parent.parent, course.parent):
        path.chmod(0o755)
    shared = Path(tempfile.mkdtemp())  # a world-writable folder inside a shared one, as /tmp/.X11-unix is
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    shared.chmod(0o1777)
    out = tmp_path_factory.mktemp("hostile") / "r.json"  # root's alone
    grader_files = [deployment.folder / "grading" / "checks.py", deployment.folder / "grading" / "child" / "probes.py",
                    ROOT / "grading" / "checks.py", ROOT / "grading" / "grade.py"]
    without_jail = env.get("GRADE_JAIL") == "off"  # the host's world-readable files are visible then (docs say so)
    capped = mode != "process" or sandbox.Cgroup.root()  # a uid's RLIMIT_NPROC, else the pids cgroup
    plan = {"confined": mode != "process", "max_processes": sandbox.MAX_PIDS if capped else 0,
            "shared": [*SHARED_TMP, str(shared)] if mode != "process" else [],
            "unreadable": [str(out), "/root/.bashrc", *map(str, grader_files[:2])] + ([] if without_jail else [
                str(course), str(ROOT / "grading" / "checks.py"), "/etc/hostname", f"/proc/{os.getpid()}/cmdline",
                "/grader/checks.py"]),
            "unwritable": [str(out), *map(str, grader_files), "/grader/probes.py", "/grader/harness.py"]}
    before = {p: p.read_bytes() for p in grader_files}
    joined = calls is not None and libc.syscall(ctypes.c_long(calls[1]), ctypes.c_long(1), b"grader-session") >= 0
    if joined:  # this process, hence the grader, in a session keyring that holds a secret, as after `su -l`
        assert libc.syscall(ctypes.c_long(calls[0]), b"user", b"secret", b"the grader's secret", ctypes.c_long(19),
                            ctypes.c_long(-3)) > 0
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:  # a service on this machine's loopback
            server.bind(("127.0.0.1", 0))
            server.listen(8)
            server.setblocking(False)
            plan["port"] = server.getsockname()[1]
            source = HOSTILE.replace("PLAN_JSON", repr(json.dumps(plan)))
            path = make_zip(out.parent / "hw3.zip", {"codebase/gan.py": source, **GRIDS})
            grader = subprocess.Popen([*deployment.command, str(path), "-o", str(out), "--sandbox", mode],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, **deployment.env, **UNJUDGED, **env})
            with Harnesses(grader.pid) as seen:
                _, stderr = grader.communicate(timeout=600)
            surviving = [pid for pid in seen.pids if alive(pid)]
            try:
                server.accept()
                reached = True
            except BlockingIOError:
                reached = False
    finally:
        if joined:
            libc.syscall(ctypes.c_long(calls[1]), ctypes.c_long(1), None)  # a new anonymous session keyring again
    assert grader.returncode == 0, stderr[-3000:]
    results = json.loads(out.read_text())
    assert_complete(results)
    graded = Graded(mode, env, results, seen.uids, surviving, reached, [str(p) for p, b in before.items()
                                                                     if p.read_bytes() != b])
    if mode != "process":
        graded.leftovers = leftovers(seen.uids, seen.cgroups)
        graded.planted = [str(p) for p in shared.iterdir()] + [
            str(p) for folder in SHARED_TMP for pattern in ("planted-*", "open-*", "daemon-*", "suid-*", "deep-*")
            for p in Path(folder).glob(pattern) if p.lstat().st_uid in seen.uids - {0}]
    return graded


def test_a_hostile_correct_submission_earns_full_marks(hostile):
    points, outputs = by_problem(hostile.results)
    assert points == FULL, {p: outputs[p] for p in FULL if points[p] != FULL[p]}  # "BROKE OUT: ..." names what got through
    assert hostile.results["extra_data"]["sandbox"].startswith(hostile.mode)


def test_no_child_reaches_the_network_or_a_keyring(hostile):
    assert not hostile.reached  # on main at 712f5a9, user and process modes connected; all read the key
    said = " ".join(hostile.results["extra_data"]["bounds"])
    assert "network: none" in said and "keyrings: a new empty session keyring" in said


def test_no_child_runs_as_host_root(hostile):
    if hostile.mode == "process":
        pytest.skip("process mode runs as the grader (trusted code only)")
    assert hostile.uids and 0 not in hostile.uids


def test_no_process_of_the_grading_outlives_it(hostile):
    assert hostile.uids and not hostile.alive  # the daemon, out of the process group, among them


def test_the_grader_files_are_unchanged(hostile):
    assert not hostile.changed


def test_nothing_is_left_behind_and_every_slot_is_clean_for_the_next_grading(hostile):
    if hostile.mode == "process":
        pytest.skip("process mode's children share the host's folders (trusted code only)")
    assert not hostile.leftovers and not hostile.planted
    if hostile.mode == "user":
        # what the next grading does first: on main at 712f5a9 it refused to start ("cannot be removed")
        assert not slots.reap_stale()
        with slots.uid_slot() as uid:
            assert uid in slots.uid_range()


def test_the_results_name_the_bounds_that_held(hostile):
    bounds = " ".join(hostile.results["extra_data"]["bounds"])
    if hostile.env.get("GRADE_CGROUPS") == "off":
        assert "RLIMIT_NPROC" in bounds and "(pids cgroup)" not in bounds
    assert ("chrooted into the jail" in hostile.results["extra_data"]["sandbox"]) == (
        hostile.mode == "user" and hostile.env.get("GRADE_JAIL") != "off")
