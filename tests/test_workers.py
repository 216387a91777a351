"""A grading child's process per problem (grading/child/workers.py): each its own time limit, output and result, the
records the grader reads, and what the grader refuses of them."""
import json
import subprocess
import sys
import time
from pathlib import Path

from grading.child import workers
from tests.conftest import ROOT, alive

# A child's side without torch or a student: workers.run in a process of its own (it makes that process
# non-dumpable and a subreaper), with ``work`` doing what a problem's code might.
DRIVER = r"""
import faulthandler, importlib.util, os, signal, sys, time
faulthandler.register(signal.SIGUSR1, all_threads=True)  # as harness.py does: a time limit asks for the stacks
spec = importlib.util.spec_from_file_location("workers", sys.argv[1])
workers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(workers)

def work(problem, out):
    if problem.startswith("sleeps"):
        time.sleep(600)
    if problem == "floods":
        for _ in range(50):
            sys.stdout.write("x" * 100_000)
        sys.stdout.write("the end")
    if problem == "raises":
        raise ValueError("at import")
    if problem == "exits":
        raise SystemExit(3)
    if problem == "escapes":  # leaves its process group for the child's, then sleeps past the limit
        os.setpgid(0, os.getpgid(os.getppid()))
        time.sleep(600)
    out.write(("result of " + problem + " in " + os.getcwd()).encode())

with os.fdopen(1, "wb", closefd=False) as result:
    workers.run(result, sys.argv[2].split(","), float(sys.argv[3]), int(sys.argv[4]), work)
"""


def _run(tmp_path, problems: list[str], timeout: float, parallel: int) -> tuple[dict, float]:
    (tmp_path / "driver.py").write_text(DRIVER)
    start = time.monotonic()
    done = subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(ROOT / "grading" / "child" / "workers.py"),
                           ",".join(problems), str(timeout), str(parallel)], cwd=tmp_path, capture_output=True,
                          timeout=120)
    records, malformed = workers.read(done.stdout, problems)
    assert not malformed and sorted(records) == sorted(problems), (done.stdout[-2000:], done.stderr[-2000:])
    return {p: (header, raw) for p, (header, raw) in records.items()}, time.monotonic() - start


def test_each_problem_gets_its_own_folder_limit_output_and_exit(tmp_path):
    records, seconds = _run(tmp_path, ["good", "sleeps", "floods", "raises", "exits", "escapes"], timeout=3, parallel=6)
    header, raw = records["good"]
    assert (header["returncode"], header["timed_out"], raw) == (0, False, f"result of good in {tmp_path}/good".encode())
    assert records["sleeps"][0]["timed_out"] and records["sleeps"][0]["returncode"] == -9
    assert "in work" in records["sleeps"][0]["output"]  # its stacks: where it was
    assert records["escapes"][0]["timed_out"] and records["escapes"][0]["returncode"] == -9  # killed all the same
    flood = records["floods"][0]["output"]
    assert len(flood) < 3 * workers.OUTPUT_CAP and "bytes of output dropped" in flood and flood.endswith("the end")
    assert records["raises"][0]["returncode"] == 1 and "ValueError: at import" in records["raises"][0]["output"]
    assert records["exits"][0]["returncode"] == 3 and records["exits"][1] == b""
    assert seconds < 2 * (3 + 2)  # the two that hang waited out one limit together (3 s, 2 s for their stacks)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted(records)


def test_at_most_parallel_run_at_once(tmp_path):
    records, seconds = _run(tmp_path, ["sleeps", "sleeps2", "good"], timeout=2, parallel=1)
    # one after another: each that hangs waits out its own limit (2 s and 2 s for its stacks)
    assert seconds >= 2 * (2 + 2) and records["good"][0]["returncode"] == 0


def _record(problem: str = "1.2", body: bytes = b"abc", **changes) -> bytes:
    header = {"problem": problem, "returncode": 0, "timed_out": False, "over": False, "output": "",
              "size": len(body), **changes}
    return workers.RECORD + json.dumps(header).encode() + b"\n" + body


def test_the_grader_reads_only_well_formed_records_of_the_problems_it_asked_for():
    problems = ["1.2", "3.2"]
    records, malformed = workers.read(_record() + _record("3.2"), problems)
    assert malformed == "" and records["1.2"][1] == b"abc" and records["3.2"][0]["returncode"] == 0
    for bad in (_record("4.5"), _record() + _record(), _record(size=10), _record(size=-1), _record(returncode="0"),
                _record(extra=1), b"junk" + _record(), workers.RECORD + b"{" * (2 * workers.MAX_RECORD_LINE),
                workers.RECORD + b"[1]\n"):
        records, malformed = workers.read(bad, problems)
        assert malformed, bad[:80]
        assert len(records) <= 1  # what came before the malformed record, at most


def test_no_record_is_no_fault_of_the_format():
    assert workers.read(b"", ["1.2"]) == ({}, "")  # a child that ended before any problem's process did


def test_the_problems_processes_die_with_the_child(tmp_path):
    # in a group of their own, out of reach of the grader's kill of the child's group: the child's end is theirs
    (tmp_path / "driver.py").write_text(DRIVER)
    child = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(ROOT / "grading" / "child" / "workers.py"),
                              "sleeps,sleeps2", "600", "2"], cwd=tmp_path, stdout=subprocess.DEVNULL)
    children = Path(f"/proc/{child.pid}/task/{child.pid}/children")
    deadline = time.monotonic() + 60
    while len(children.read_text().split()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers_ = [int(pid) for pid in children.read_text().split()]
    assert len(workers_) == 2
    child.kill()
    child.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers_) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers_)
