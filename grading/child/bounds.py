"""The mode's probe, inside a child that runs no student code: try each bound the results may name, and say
which held. harness.py runs it for PROBLEM ``probe``; grading/sandbox/probe.py reads what it sends.

It sends one JSON line per bound as it is tried: {"bound": name, "held": bool, "detail": str}. The disk comes
last: in user mode the grader watches the child's folder and kills the child past its budget, so a probe that is
killed there (and sends nothing more) shows that bound held.
"""
from __future__ import annotations

import errno
import json
import mmap
import os
import resource
import signal
import threading
import time

MAX_PIDS = 128  # as grading/sandbox/cgroups.py: processes and threads a child may have at once
MEMORY_BYTES = 3 << 30  # as grading/sandbox/cgroups.py: all a child's processes together
DISK_BYTES = 64 << 20  # as grading/sandbox: each writable place


def run(result, confine) -> None:
    """Try every bound, sending a line for each through the open file ``result``."""

    def send(bound: str, held: bool, detail: str = "") -> None:
        result.write(json.dumps({"bound": bound, "held": held, "detail": detail}).encode() + b"\n")
        result.flush()

    for bound, held in confine.check().items():
        send(bound, held)
    send("processes", *_processes())
    if os.environ.get("GRADE_PROBE_MEMORY") == "1":  # a memory cgroup holds it: never take 3 GiB of a laptop
        send("memory", *_memory())
    send("address space", *_address_space())
    for place in ("/tmp", "/dev/shm"):
        if os.access(place, os.W_OK):
            send(f"disk {place}", *_fill(place))
    held, detail = _fill(".")
    send("disk .", held, detail)
    if not held and os.environ.get("GRADE_PROBE_WATCHED") == "1":
        time.sleep(3)  # in user mode the grader kills the child here, for what it wrote to its folder
        send("disk . watched", False, "not stopped after writing past its budget")


def _processes() -> tuple[bool, str]:
    """Start more tasks than MAX_PIDS; held if some could not start. They are threads: the kernel counts a thread
    against the pids cgroup and RLIMIT_NPROC as it counts a process (both are clone()), and 136 forks of a process
    that imported torch cost seconds of page-table copying."""
    release, started, refused = threading.Event(), [], ""
    threading.stack_size(256 << 10)  # 136 stacks within RLIMIT_AS
    try:
        for _ in range(MAX_PIDS + 8):
            thread = threading.Thread(target=release.wait, args=(60,), daemon=True)
            try:
                thread.start()
            except RuntimeError as error:  # "can't start new thread": clone() refused
                refused = str(error)
                break
            started.append(thread)
    finally:
        release.set()
        for thread in started:
            thread.join()
        threading.stack_size(0)
    return bool(refused), f"{len(started)} started" + (f", then: {refused}" if refused else "")


def _memory() -> tuple[bool, str]:
    """Three processes each take a third of MEMORY_BYTES and 64 MiB more, every page written, and hold it: held if
    not all of them could (together they pass the cap; each alone is far under RLIMIT_AS, so only a cap across
    processes stops them). They ask the kernel to fill their pages at once (MADV_POPULATE_WRITE, Linux 5.14; page
    by page before it): a fault per page costs this probe seconds of CPU."""
    share = MEMORY_BYTES // 3 + (64 << 20)
    children = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                with open("/proc/self/oom_score_adj", "w") as f:
                    f.write("1000")  # the out-of-memory killer takes a hog, never the probe (the largest anyway)
            except OSError:
                pass  # no /proc: the jail
            try:
                block = mmap.mmap(-1, share, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
                try:
                    block.madvise(getattr(mmap, "MADV_POPULATE_WRITE", 23))
                except OSError as error:
                    if error.errno != errno.EINVAL:  # ENOMEM: refused
                        raise
                    pages = memoryview(block)[::mmap.PAGESIZE]
                    pages[:] = b"x" * len(pages)
                time.sleep(2)
                code = 0
            except (OSError, MemoryError):
                pass
            os._exit(code)
        children.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    whole = sum(code == 0 for code in codes)
    return whole < len(children), f"{whole} of {len(children)} processes held {share >> 20} MiB each"


def _address_space() -> tuple[bool, str]:
    """One process asks for more address space than its rlimit; held if refused."""
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return False, "no RLIMIT_AS"
    try:
        block = bytearray(limit)  # never touched: calloc maps it lazily
        del block
        return False, f"{limit} bytes mapped"
    except MemoryError:
        return True, ""


def _fill(place: str) -> tuple[bool, str]:
    """Write more than DISK_BYTES to ``place`` in files under the per-file cap; held if refused."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past RLIMIT_FSIZE: EFBIG rather than death
    written, refused = 0, ""
    chunk = bytes(1 << 20)
    try:
        for i in range(4):
            with open(os.path.join(place, f"probe-fill-{i}"), "wb") as f:
                for _ in range((DISK_BYTES >> 20) // 3 + 2):
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
    except OSError as error:
        refused = error.strerror or str(error)
    finally:
        if place != ".":
            for i in range(4):
                try:
                    os.unlink(os.path.join(place, f"probe-fill-{i}"))
                except OSError:
                    pass
    return bool(refused), f"{written >> 20} MiB written" + (f", then: {refused}" if refused else "")
