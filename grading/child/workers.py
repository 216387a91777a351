"""One process per problem, forked by the grading child once torch is imported: a grading imports torch once in
its sandbox, not once per problem.

Each worker gets its own process group, folder (``PROBLEM/`` beside ``codebase/``), output pipe, result pipe and
CPU-time limit; it imports the student's gan.py and runs its problem's probes. The child (``run``) starts at most
``parallel`` at once, gives each ``timeout`` seconds from its start (then asks it where it is, SIGUSR1, and kills
its group), caps what each writes, and sends the grader one record per problem, in the order they end:

    GRADE-PROBLEM {"problem": ..., "returncode": ..., "timed_out": ..., "over": ..., "output": ..., "size": N}\\n
    N bytes: what the worker wrote to its result pipe (wire.py's frame), empty if over the cap

The child is made non-dumpable before it forks, so that no worker (the same uid) can open its pipes through /proc;
the seccomp filter already refuses ptrace. Only the standard library: harness.py loads this file by path.
"""
from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import sys
import tempfile
import time
import traceback

OUTPUT_CAP = 2048  # bytes of a worker's output kept from its start, and as many from its end
MAX_RESULT_BYTES = 16 << 20  # what one worker may send back
RECORD = b"GRADE-PROBLEM "
MAX_RECORD_LINE = 1 << 16


class _Worker:
    def __init__(self, problem: str, pid: int, output: int, result: int, timeout: float):
        self.problem, self.pid = problem, pid
        self.fds = {output: "output", result: "result"}
        self.deadline = time.monotonic() + timeout
        self.head, self.tail, self.dropped = bytearray(), b"", 0
        self.result, self.over = bytearray(), False
        self.returncode: int | None = None
        self.timed_out, self.kill_at, self.drain_until = False, None, None

    def take(self, fd: int, chunk: bytes) -> None:
        if self.fds[fd] == "output":
            keep = chunk[:OUTPUT_CAP - len(self.head)]
            self.head.extend(keep)
            self.tail = (self.tail + chunk[len(keep):])[-OUTPUT_CAP:]
            self.dropped += len(chunk) - len(keep)
        elif len(self.result) + len(chunk) <= MAX_RESULT_BYTES:
            self.result.extend(chunk)
        else:
            self.over = True

    def record(self) -> bytes:
        dropped = self.dropped - len(self.tail)
        text = self.head.decode(errors="replace")
        if dropped > 0:
            text += f"\n[... {dropped} bytes of output dropped ...]\n"
        result = b"" if self.over else bytes(self.result)
        header = {"problem": self.problem, "returncode": self.returncode, "timed_out": self.timed_out,
                  "over": self.over, "output": text + self.tail.decode(errors="replace"), "size": len(result)}
        return RECORD + json.dumps(header).encode() + b"\n" + result


def run(result, problems: list[str], timeout: float, parallel: int, work) -> None:
    """Fork a process that calls ``work(problem, out)`` (``out``: its result pipe, a binary file) for each problem,
    at most ``parallel`` at once, and write each one's record to ``result`` (a binary file) as it ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: the workers cannot reach this process's pipes through /proc
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: their orphans come here, to be reaped
    pending, running, parallel = list(problems), {}, max(1, parallel)
    while pending or running:
        while pending and len(running) < parallel:
            others = [result.fileno(), *(fd for w in running.values() for fd in w.fds)]
            problem = pending.pop(0)
            try:
                worker = _start(problem, timeout, work, result, others)
            except OSError as error:  # the process cap, filled by what another problem's code left running
                unborn = _Worker(problem, -1, -1, -1, 0)
                unborn.fds, unborn.returncode = {}, 1
                unborn.head.extend(f"this problem's process could not start ({error}): are processes that another "
                                   "problem's code started still running?".encode())
                result.write(unborn.record())
                result.flush()
                continue
            running[worker.pid] = worker
        fds = [fd for w in running.values() for fd in w.fds]
        ready = select.select(fds, [], [], 0.05)[0] if fds else time.sleep(0.05) or []
        for w in running.values():
            for fd in [fd for fd in w.fds if fd in ready]:
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    w.take(fd, chunk)
                else:
                    del w.fds[fd]
                    os.close(fd)
        _reap(running)
        now = time.monotonic()
        for pid, w in list(running.items()):
            if w.returncode is None and w.kill_at is None and now >= w.deadline:
                w.timed_out, w.kill_at = True, now + 2.0  # its stacks, written to its output, then the end
                _signal(pid, signal.SIGUSR1)
            if w.returncode is None and w.kill_at is not None and now >= w.kill_at:
                _signal(pid, signal.SIGKILL)
            if w.returncode is not None:
                w.drain_until = w.drain_until or now + 1.0  # its forks may still hold the pipes
                if not w.fds or now >= w.drain_until:
                    try:  # its forks in its group (the group's id stays taken while it has members)
                        os.killpg(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                    for fd in w.fds:
                        os.close(fd)
                    result.write(w.record())
                    result.flush()
                    del running[pid]


def _signal(pid: int, number: int) -> None:
    """``number`` to a worker and its process group (which its code may have left)."""
    for send in (os.kill, os.killpg):
        try:
            send(pid, number)
        except (ProcessLookupError, PermissionError):
            pass


def _reap(running: dict) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in running and running[pid].returncode is None:
            running[pid].returncode = os.waitstatus_to_exitcode(status)


def _start(problem: str, timeout: float, work, result, others: list[int]) -> _Worker:
    output_r, output_w = os.pipe()
    result_r, result_w = os.pipe()
    result.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError:
        for fd in (output_r, output_w, result_r, result_w):
            os.close(fd)
        raise
    if pid == 0:
        code = 1
        try:
            # Dies with the child, however it ends: its group of its own keeps it from the grader's kill of the
            # child's group (PR_SET_PDEATHSIG; and the child may have ended before that was set)
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:
                os._exit(1)
            os.setpgid(0, 0)
            os.dup2(output_w, 1)
            os.dup2(output_w, 2)
            for fd in {*others, output_r, result_r, output_w} - {1, 2}:  # the child's result pipe, other workers'
                os.close(fd)
            folder = os.path.abspath(problem)
            os.mkdir(folder, 0o700)
            os.chdir(folder)
            os.environ.update(HOME=folder, TMPDIR=folder, MPLCONFIGDIR=folder)
            tempfile.tempdir = None
            code = _main(work, problem, result_w)
        finally:
            os._exit(code)
    os.close(output_w)
    os.close(result_w)
    return _Worker(problem, pid, output_r, result_r, timeout)


def _main(work, problem: str, result: int) -> int:
    """What Python does with an exception of the student's code: the traceback, and status 1 (SystemExit's own)."""
    try:
        with os.fdopen(result, "wb") as out:
            work(problem, out)
        sys.stdout.flush()
        return 0
    except SystemExit as stop:
        code = stop.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 - whatever the student's code raised
        traceback.print_exc()
        return 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass


def read(stream: bytes, problems: list[str]) -> tuple[dict[str, tuple[dict, bytes]], str]:
    """The records in ``stream`` (what follows the ready line), by problem, and "" or what was malformed.
    Only known problems, each once, with the fields of the format."""
    records, at = {}, 0
    while at < len(stream):
        if not stream.startswith(RECORD, at):
            return records, "a record does not start with its tag"
        end = stream.find(b"\n", at, at + MAX_RECORD_LINE)
        if end < 0:
            return records, "a record's header has no end"
        try:
            header = json.loads(stream[at + len(RECORD):end])
        except ValueError:
            return records, "a record's header is not JSON"
        fields = {"problem": str, "returncode": int, "timed_out": bool, "over": bool, "output": str, "size": int}
        if not isinstance(header, dict) or set(header) != set(fields) or \
                not all(isinstance(header[k], t) for k, t in fields.items()) or \
                header["problem"] not in problems or header["problem"] in records or \
                not 0 <= header["size"] <= len(stream) - end - 1:
            return records, "a record's header is malformed"
        records[header["problem"]] = header, stream[end + 1:end + 1 + header["size"]]
        at = end + 1 + header["size"]
    return records, ""
