"""Shared pytest setup: the project root on sys.path, and the ``--gan`` option of the grading suite.

    pytest tests/grading --gan path/to/gan.py    # judge another gan.py (default: the project's codebase/gan.py)

Grading tests carry a ``points`` marker; a summary of the points per handout problem ends the run.

The helpers every test file shares live here: the commands (GRADING, GRADE, GRADE_CLASS), submissions (REFERENCE,
VARIANT, GRIDS, make_zip), one grading in this process (grade_here) or one problem's child (one_child), reading
results (by_problem, grids_pass, assert_complete), one grading's children and what they leave, told apart from
other graders' on this machine (Harnesses, leftovers, alive, descends), synthetic training data (the ``data_dir``
fixture, train_config), and the grader deployed as a course deploys it (the ``deployment`` fixture).
"""
import fcntl
import io
import json
import os
import shutil
import struct
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see codebase/__init__.py

import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # pytest.ini's parallel workers share the cores: torch's threads too
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
from PIL import Image  # noqa: E402

from grading import checks, sandbox, scoring, submission  # noqa: E402
from grading.sandbox import cleanup, jail, slots  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `import codebase`, `import tests.grading` under a bare `pytest`
# `python -m grading ...` in a subprocess finds this checkout's package from any working folder
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
GRADING = [sys.executable, "-m", "grading"]  # the instructor's command
GRADE = [*GRADING, "grade"]  # one submission
GRADE_CLASS = [*GRADING, "class"]  # a folder of submissions


def pytest_addoption(parser):
    parser.addoption("--gan", default=str(ROOT / "codebase" / "gan.py"),
                     help="gan.py judged in this process by tests/grading (trusted code only; default: codebase/gan.py)")


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker more than the cores (at most 4). Much of a worker's time is spent waiting on the
    gradings and trainings it started (time limits, sleeping submissions), which another worker fills."""
    return min(4, len(os.sched_getaffinity(0)) + 1)


@pytest.fixture(scope="session")
def gan(request):
    """The module under grading, imported from --gan (in this process: use python -m grading grade for untrusted code)."""
    from grading.child.probes import load_module

    return load_module(request.config.getoption("--gan"))


@pytest.fixture(scope="module")
def data_dir(request, tmp_path_factory) -> Path:
    """Synthetic Fashion-MNIST files (tests/synthetic.py) for training: the test module's N_TRAIN training images
    (default 128) and 20 test images."""
    from tests.synthetic import make_dataset

    folder = tmp_path_factory.mktemp("fmnist")
    make_dataset(folder, n_train=getattr(request.module, "N_TRAIN", 128), n_test=20)
    return folder


def train_config(data_dir: Path, out: Path, **changes):
    """A training Config on ``data_dir`` writing to ``out``: CPU, batches of 2, no metrics, then ``changes``."""
    from codebase.config import Config

    return Config(**{"batch_size": 2, "data_dir": str(data_dir), "out_dir": str(out), "device": "cpu",
                     "metrics": False, **changes})


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module: small tensors on a shared 2-core machine run several times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_configure(config):
    config.addinivalue_line("markers", "points(problem, value): handout points of a grading test")


def pytest_collection_modifyitems(items):
    for item in items:  # so that every report of the test, even a failed setup, carries its points
        if marker := item.get_closest_marker("points"):
            item.user_properties.append(("points", marker.args))


def pytest_terminal_summary(terminalreporter):
    tests: dict[str, tuple[str, float, bool]] = {}  # nodeid -> (problem, points, passed)
    for reports in terminalreporter.stats.values():
        for report in reports:
            points = dict(getattr(report, "user_properties", ())).get("points")
            if points:
                passed = tests.get(report.nodeid, (None, 0, False))[2] or (report.when == "call" and report.passed)
                tests[report.nodeid] = (*points, passed)
    if not tests:
        return
    earned: dict[str, list[float]] = {}
    for problem, points, passed in tests.values():
        score = earned.setdefault(problem, [0.0, 0.0])
        score[0] += points if passed else 0.0
        score[1] += points
    rows = ", ".join(f"{p}: {s:g}/{m:g}" for p, (s, m) in sorted(earned.items()))
    total = [sum(column) for column in zip(*earned.values())]
    terminalreporter.write_line(f"grading points for {terminalreporter.config.getoption('--gan')}: {rows}; "
                                f"total {total[0]:g}/{total[1]:g}")


@dataclass
class Deployment:
    folder: Path  # the grader's files, as autograder_zip.py lists them
    command: list[str]  # `python -m grading grade` there, for every sandbox mode
    env: dict[str, str]  # to add to the environment: where the grids' reference features are cached


@pytest.fixture(scope="session")
def deployment(tmp_path_factory) -> Deployment:
    """The grader deployed as a course deploys it: its files (autograder_zip.py's list) copied to a folder of root's
    alone, run with this Python readable to other users (user mode's uids must run it), from that folder, with -E:
    its own package, whatever PYTHONPATH says. The prefix hides this user's home, and with it the cache of the
    grids' reference features: a copy of it stands in a folder the deployment sees (else each grading recomputes
    it, about 10 s)."""
    from codebase.classifier import cache_dir
    from grading import autograder_zip
    from tests import world_python

    prefix = world_python.command_prefix()
    folder = tmp_path_factory.mktemp("deployed") / "grader"
    for name in autograder_zip.grader_files():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, folder / name)
    cache = tmp_path_factory.mktemp("metrics-cache")
    for cached in cache_dir().glob("grid_reference_*.pt") if cache_dir().is_dir() else []:
        shutil.copyfile(cached, cache / cached.name)
    return Deployment(folder, [*prefix, "/bin/sh", "-c", 'cd "$0" && exec "$@"', str(folder), sys.executable, "-E",
                               "-m", "grading", "grade"], {"GAN_METRICS_CACHE": str(cache)})


# ---- Gradings: submissions, one grading in this process, one problem's child, and what they leave ------------

REFERENCE = (ROOT / "codebase" / "gan.py").read_text()
VARIANT = (ROOT / "tests" / "grading" / "variant_gan.py").read_text()  # written apart from the reference
FULL = {"1.2": 10.0, "3.2": 10.0, "4.5": 15.0}  # the points of each problem


def png(width: int = 302, height: int = 302) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 80, 120)).save(buffer, "PNG")
    return buffer.getvalue()


GRIDS = {f"{run}/fake_0500.png": png() for run in submission.RUNS.values()}
# In the environment of a grading whose grids are not what a test is about: where Fashion-MNIST is not, grids are
# left unjudged (what judging does is tests/test_grids.py's), which spares the grader the classifier, the real
# images and the copy search
UNJUDGED = {"FASHION_MNIST_DIR": "/nonexistent/fashion-mnist"}


needs_bwrap = pytest.mark.skipif(not sandbox.bubblewrap_version(), reason="bubblewrap cannot create namespaces here")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="user mode and uid slots need root")


def make_zip(path, members: dict, symlinks: tuple = (), encrypted: bool = False):
    """A ZIP of members {name: bytes or str}; names in symlinks are symbolic links; all encrypted if asked."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o120777 if name in symlinks else 0o100644) << 16
            zf.writestr(info, content)
    if encrypted:  # zipfile cannot encrypt: set the flag in each local and central header
        data = bytearray(path.read_bytes())
        with zipfile.ZipFile(path) as zf:
            offsets, central = [info.header_offset for info in zf.infolist()], zf.start_dir
        for offset in offsets:
            data[offset + 6] |= 1
        while data[central:central + 4] == b"PK\x01\x02":
            data[central + 8] |= 1
            central += 46 + sum(struct.unpack("<HHH", data[central + 28:central + 34]))
        path.write_bytes(data)
    return path


def by_problem(results: dict) -> tuple[dict, dict]:
    """(points per problem, outputs per problem) of results.json."""
    points, outputs = {}, {}
    for test in results["tests"]:
        problem = test["number"].rsplit(".", 1)[0]
        points[problem] = points.get(problem, 0.0) + test["score"]
        outputs[problem] = outputs.get(problem, "") + test["output"] + "\n"
    return points, outputs


def grids_pass(results: dict) -> list[str]:
    return ["passed" if t["output"] == "a valid PNG of sane size" else "failed" for t in results["tests"]
            if "sample grid out_" in t["name"]]


def assert_complete(results: dict) -> None:
    json.dumps(results)
    assert len(results["tests"]) == sum(len(p.checks) + 2 for p in checks.PROBLEMS.values())
    for test in results["tests"]:
        assert set(test) == {"name", "number", "score", "max_score", "output", "status"}
        assert 0 <= test["score"] <= test["max_score"] and test["status"] in ("passed", "failed")
        if test["max_score"]:
            assert (test["status"] == "passed") == (test["score"] == test["max_score"])
    assert results["score"] == sum(test["score"] for test in results["tests"])


def grade_here(tmp_path, source: str, members: dict | None = None, timeout: float = 60.0, mode: str = "auto",
           **flags):
    path = make_zip(tmp_path / "hw3.zip", {"codebase/gan.py": source, **GRIDS, **(members or {})}, **flags)
    sandbox.pick_mode(mode)  # the mode's probe, once per process: not part of the time a grading takes
    start = time.monotonic()
    results = scoring.grade(path, timeout=timeout, mode=mode)
    assert_complete(results)
    return results, time.monotonic() - start


def one_child(source: str, problem: str = "1.2", mode: str = "process", timeout: float = 60.0) -> dict | str:
    """The decoded outputs of one problem's child on ``source`` (or why there are none), for the tests about what a
    child does with a gan.py: one child in place of a grading's three."""
    sandbox.pick_mode(mode)
    raw = scoring.run_problems([problem], {**scoring.starter_package(), submission.GAN: source.encode()}, timeout,
                               mode)[problem]
    assert not isinstance(raw, scoring.GradingFailed), raw
    return scoring.decode(raw[0] if isinstance(raw, tuple) else raw)


def descends(pid: int, ancestor: int) -> bool:
    """Whether process ``pid`` descends from ``ancestor`` (a grader, as a subreaper, keeps its orphans)."""
    for _ in range(64):
        if pid == ancestor:
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid <= 1:
            return False
    return False


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"  # a zombie has already been killed
    except FileNotFoundError:
        return False


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


class Harnesses:
    """Records, while a grader runs, every grading child of its (harness.py's Python, a descendant of the grader's
    process ``root``; other graders may run on this machine): pids (their forks apart: each problem's process, and
    what the student's code forks; a mode's probe child apart: it runs no student code, and only where the probe's
    result is not cached), host uids and cgroups."""

    def __init__(self, root: int):
        self.root = root
        self.uids: set[int] = set()
        self.pids: set[int] = set()
        self.forks: set[int] = set()
        self.others: set[int] = set()
        self.probes: set[int] = set()
        self.cgroups: set[str] = set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def _ours(self, pid: int) -> bool:
        for _ in range(64):
            if pid == self.root:
                return True
            if pid <= 1:
                return False
            pid = _parent(pid)
        return False

    def watch(self):
        while not self.done.is_set():
            known = self.pids | self.probes | self.forks | self.others
            for entry in Path("/proc").iterdir():
                try:
                    # the python that runs harness.py (not the sh, chroot, setpriv and bwrap that start it as root)
                    if entry.name.isdigit() and int(entry.name) not in known and \
                            b"harness.py" in (cmdline := (entry / "cmdline").read_bytes()) and \
                            (entry / "comm").read_text().startswith("python") and self._ours(int(entry.name)):
                        status = (entry / "status").read_text()
                        self.uids.update(int(u) for u in status.split("Uid:")[1].split("\n")[0].split())
                        self.cgroups.update(line.split(":", 2)[2] for line in (entry / "cgroup").read_text().splitlines()
                                            if "grade-" in line)
                        parent = _parent(int(entry.name))
                        if b"harness.py" in Path(f"/proc/{parent}/cmdline").read_bytes():
                            if parent in self.pids:  # a problem's process
                                self.forks.add(int(entry.name))
                            elif parent in self.forks | self.probes:  # the student's forks, the probe's
                                self.others.add(int(entry.name))
                            continue  # (or a fork of a child not seen yet: looked at again)
                        (self.probes if b"\0probe\0" in cmdline else self.pids).add(int(entry.name))
                except (OSError, IndexError, ValueError):
                    pass
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def _held(uid: int) -> bool:
    """Whether a grading holds ``uid``'s slot now: what the uid has is then that grading's (which cleaned the slot
    when it took it), not a leftover of an earlier one."""
    try:
        with open(slots.locks_folder() / str(uid), "a") as hold:
            fcntl.flock(hold, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    return False


def leftovers(uids: set[int], cgroups: set[str]) -> list[str]:
    """What is left of one grading's children, given their host uids and cgroups: processes, cgroups, System V IPC
    objects, folders and files of those uids (other gradings may run at the same time, and take the same uid slots
    once this one let them go: theirs are not counted)."""
    uids = {uid for uid in uids - {0} if not _held(uid)}
    left = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "status").read_text().split("Uid:")[1].split()[0]) in uids:
                left.append(f"process {entry.name}")
        except (OSError, IndexError):
            pass
    left += [f"cgroup {root / c.lstrip('/')}" for c in cgroups for root in sandbox.Cgroup.roots().values()
             if (root / c.lstrip("/")).exists()]
    for kind, column in (("shm", 7), ("sem", 4), ("msg", 7)):
        for row in Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]:
            if int(row.split()[column]) in uids:
                left.append(f"{kind} of {row.split()[column]}")
    for folder in (jail.STATE / "boxes", *(p / "work" for p in jail.STATE.glob("jail-*")), *map(Path, cleanup.SHARED_TMP[:3])):
        for path in folder.iterdir() if folder.is_dir() else []:
            try:
                info = path.lstat()
            except OSError:
                continue
            if info.st_uid in uids or info.st_gid in uids:
                left.append(f"{path}")
    return left
