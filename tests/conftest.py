"""Shared pytest setup: the project root on sys.path, and the ``--gan`` option of the grading suite.

    pytest tests/grading --gan path/to/gan.py    # judge another gan.py (default: the project's codebase/gan.py)

Grading tests carry a ``points`` marker; a summary of the points per handout problem ends the run.
"""
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see codebase/__init__.py

import pytest  # noqa: E402
import torch  # noqa: E402

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


@pytest.fixture(scope="session")
def gan(request):
    """The module under grading, imported from --gan (in this process: use python -m grading grade for untrusted code)."""
    from grading.child.probes import load_module

    return load_module(request.config.getoption("--gan"))


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


@pytest.fixture(scope="session")
def deployment(tmp_path_factory) -> Deployment:
    """The grader deployed as a course deploys it: its files (autograder_zip.py's list) copied to a folder of root's
    alone, run with this Python readable to other users (user mode's uids must run it), from that folder, with -E:
    its own package, whatever PYTHONPATH says."""
    from grading import autograder_zip
    from tests import world_python

    prefix = world_python.command_prefix()
    folder = tmp_path_factory.mktemp("deployed") / "grader"
    for name in autograder_zip.grader_files():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, folder / name)
    return Deployment(folder, [*prefix, "/bin/sh", "-c", 'cd "$0" && exec "$@"', str(folder), sys.executable, "-E",
                               "-m", "grading", "grade"])
