"""Grade a student's hw3.zip (from make_submission.sh) and write Gradescope's results.json.

    python grade.py hw3.zip -o results.json               # each problem's child gets 60 s
    python grade.py hw3.zip -o results.json --timeout 20

The loss problems are scored by the checks of tests/grading (1.2: 10, 3.2: 10, 4.5: 15 points); each run's final
sample grid, out_<run>/fake_<step>.png, is checked to be a valid PNG of sane size (0 points, shown to the student).

How it treats a submission:
* The ZIP is read in memory. Only allowlisted names are used (codebase/gan.py, out_<run>/fake_<step>.png), with
  caps on the member count and sizes; symlinks, encrypted, duplicate, absolute and ``..`` members are rejected.
  Only gan.py touches the disk, under a fixed name inside a fresh temporary directory; the other members of the
  ZIP (a conftest.py, pytest.ini or sitecustomize.py among them) are never written.
* Student code runs only in children ``python -I harness.py``, one per problem, in parallel. Where bubblewrap can
  create namespaces (``--sandbox auto`` or ``bwrap``), each child runs in new user, PID, network, IPC and UTS
  namespaces that see only /usr, this Python, the three harness files (not the checks) and its own folder,
  with a private /tmp: it cannot read the grader or other submissions, reach the network or outlive its
  namespace (a daemon dies with it). ``--sandbox process`` (machines that forbid user namespaces) runs the
  child in its own session and process group only. Either way the child gets a minimal environment and rlimits,
  a pids cgroup (where one is writable) caps its processes at MAX_PIDS, its group and cgroup are killed at
  the wall-clock timeout or once it exits, its output is drained and capped, and SIGTERM
  or SIGINT to grade.py kills every child. A child returns the probes' raw outputs in a file of plain data
  (tests/grading/wire.py: a JSON header and raw tensor bytes, sizes checked before anything is allocated, never
  a pickle); the expected values and the scoring live here only.
* Whatever fails, results.json is complete: the affected part gets 0 points and a message, the rest is scored.
  A placeholder with 0 points is written first, in case this process itself is stopped.

In process mode the children run as the grader's user: run the grader in a container or as a dedicated user
there. A deployment needs this file, make_handout.py, the starter's codebase files and
tests/grading/{probes,checks,harness,wire}.py, and bubblewrap: no solution (gan.py, variant_gan.py) is used.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import select
import signal
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from make_handout import STARTER, starter_files
from tests.grading import checks, wire

ROOT = Path(__file__).resolve().parent
HARNESS = ROOT / "tests" / "grading" / "harness.py"
GAN = "codebase/gan.py"
RUNS = {"1.2": "out_nonsaturating", "3.2": "out_nonsaturating_conditional", "4.5": "out_wasserstein_gp"}
_GRID = re.compile(r"(out_\w+)/fake_(\d{1,9})\.png")
GRID_POINTS = 0.0
GRID_PIXELS = (28, 2048)  # smallest and largest sane width or height
MAX_ZIP_BYTES = 32 << 20
MAX_MEMBERS = 64
MAX_GAN_BYTES = 512 << 10
MAX_PNG_BYTES = 8 << 20
MAX_RESULT_BYTES = 64 << 20  # the harness's file-size limit as well
OUTPUT_CAP = 2048  # bytes of a child's output kept from its start, and as many from its end
DEFAULT_TIMEOUT = 60.0


# ---- Reading the ZIP -------------------------------------------------------------------------------------------


@dataclass
class Submission:
    members: dict[str, bytes | str] = field(default_factory=dict)  # allowlisted name -> content, or why rejected
    notes: list[str] = field(default_factory=list)  # about the ZIP as a whole and members outside the allowlist
    fatal: str | None = None  # why nothing of the submission was graded

    def grid(self, run: str) -> tuple[str, bytes | str] | None:
        """(name, content or rejection) of the run's final grid, the one with the highest step."""
        names = [n for n in self.members if (m := _GRID.fullmatch(n)) and m[1] == run]
        if not names:
            return None
        name = max(names, key=lambda n: int(_GRID.fullmatch(n)[2]))
        return name, self.members[name]


def _is_junk(name: str) -> bool:
    """Files that archivers and operating systems add on their own (macOS resource forks, Finder and Explorer
    metadata): never graded, never reported."""
    parts = name.split("/")
    return parts[0] == "__MACOSX" or parts[-1] in (".DS_Store", "Thumbs.db", "desktop.ini") or \
        parts[-1].startswith("._")


def _common_prefix(names: list[str]) -> str:
    """The folder the submission sits in when it was zipped with its folder ("hw3/codebase/gan.py", as the starter
    unzips and as macOS's Compress writes): the one prefix before codebase/gan.py, or "" if there is none."""
    if GAN in names:
        return ""
    prefixes = {n[: -len(GAN)] for n in names if n.endswith("/" + GAN)}
    if len(prefixes) != 1:
        return ""
    prefix = prefixes.pop()
    return prefix if prefix.count("/") == 1 else ""


def read_submission(path: Path) -> Submission:
    """The allowlisted members of the ZIP (or folder of loose files) at ``path``; reading never writes to disk.

    Windows backslash separators are read as folders, one enclosing folder is looked through, and OS junk
    (``__MACOSX/``, ``.DS_Store``) is skipped."""
    if Path(path).is_dir():
        return read_folder(Path(path))
    sub = Submission()
    try:
        size = os.stat(path).st_size
        if size > MAX_ZIP_BYTES:
            sub.fatal = f"the ZIP is {size} bytes, over the {MAX_ZIP_BYTES} byte limit: not graded"
            return sub
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not _is_junk(i.filename.replace("\\", "/"))]
            if len(infos) > MAX_MEMBERS:
                sub.fatal = (f"the ZIP has {len(infos)} files and folders, over the limit of {MAX_MEMBERS}: not "
                             f"graded. Build it with make_submission.sh, which holds only what is graded")
                return sub
            prefix = _common_prefix([i.filename.replace("\\", "/") for i in infos])
            counts: dict[str, int] = {}
            for info in infos:
                counts[info.filename] = counts.get(info.filename, 0) + 1
            for info in infos:
                _read_member(zf, info, counts[info.filename], sub, prefix)
    except (OSError, zipfile.BadZipFile, ValueError, RuntimeError, EOFError) as error:
        sub.fatal = f"cannot read the submission as a ZIP ({type(error).__name__}: {error})"
    return sub


def read_folder(folder: Path) -> Submission:
    """The allowlisted files of a folder of loose files (Gradescope unpacks an uploaded ZIP into one), with the
    same caps as a ZIP; symbolic links and special files are rejected."""
    sub = Submission()
    names = []
    for root, dirs, files in os.walk(folder):  # os.walk does not follow symbolic links to folders
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            rel = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if not _is_junk(rel):
                names.append(rel)
        if len(names) > MAX_MEMBERS:
            sub.fatal = f"the submission has over {MAX_MEMBERS} files, over the limit: not graded"
            return sub
    prefix = _common_prefix(names)
    for rel in names:
        name = rel[len(prefix):] if prefix and rel.startswith(prefix) else rel
        allowed = name == GAN or bool(_GRID.fullmatch(name))
        path = folder / rel
        if not allowed:
            sub.notes.append(f"ignored {rel!r}: only {GAN} and out_<run>/fake_<step>.png are graded")
            continue
        info = os.lstat(path)
        cap = MAX_GAN_BYTES if name == GAN else MAX_PNG_BYTES
        if not stat.S_ISREG(info.st_mode):
            reason = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        elif info.st_size > cap:
            reason = f"{info.st_size} bytes, over the {cap} byte limit"
        else:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                sub.members[name] = f.read(cap + 1)[: cap + 1]
            continue
        sub.members[name] = f"rejected: {reason}"
        sub.notes.append(f"rejected {rel!r}: {reason}")
    return sub


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, count: int, sub: Submission, prefix: str = "") -> None:
    raw = info.filename
    name = raw.replace("\\", "/")
    if prefix and name.startswith(prefix):
        name = name[len(prefix):]
    allowed = name == GAN or bool(_GRID.fullmatch(name))
    if name.endswith("/") and not allowed:
        return  # a folder entry
    parts = name.split("/")
    kind = (info.external_attr >> 16) & 0o170000
    if raw.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", raw) or ".." in parts or "\0" in raw:
        reason = "unsafe name (absolute, or with ..)"
    elif count > 1:
        reason = f"appears {count} times"
    elif kind == stat.S_IFLNK:
        reason = "a symbolic link"
    elif kind not in (0, stat.S_IFREG):
        reason = "not a regular file"
    elif info.flag_bits & 0x1:
        reason = "encrypted"
    elif not allowed:
        sub.notes.append(f"ignored {name!r}: only {GAN} and out_<run>/fake_<step>.png are graded")
        return
    else:
        cap = MAX_GAN_BYTES if name == GAN else MAX_PNG_BYTES
        reason = _content(zf, info, cap)
    if isinstance(reason, bytes):
        sub.members[name] = reason
        return
    if allowed:
        sub.members[name] = f"rejected: {reason}"
    sub.notes.append(f"rejected {name!r}: {reason}")


def _content(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes | str:
    """The member's bytes, decompressing at most cap + 1 of them, or why they cannot be read."""
    if info.file_size > cap:
        return f"{info.file_size} bytes uncompressed, over the {cap} byte limit"
    try:
        with zf.open(info) as member:
            data = member.read(cap + 1)
    except Exception as error:  # noqa: BLE001 - zipfile, zlib, bz2, lzma each raise their own
        return f"unreadable ({type(error).__name__}: {error})"
    return data if len(data) <= cap else f"over the {cap} byte limit once decompressed"


def check_grid(entry: tuple[str, bytes | str] | None, run: str) -> str | None:
    """None if the grid is a valid PNG of sane size, else what is wrong with it."""
    if entry is None:
        return f"no sample grid: expected {run}/fake_<step>.png in the ZIP"
    name, data = entry
    if isinstance(data, str):
        return f"{name}: {data}"
    low, high = GRID_PIXELS
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            width, height = image.size
            if not (low <= width <= high and low <= height <= high):
                return f"{name} is {width}x{height} pixels: expected between {low} and {high} a side"
            image.load()
    except Exception as error:  # noqa: BLE001 - Pillow raises many kinds on broken files
        return f"{name} is not a valid PNG ({type(error).__name__}: {error})"
    return None


# ---- Running a problem in a child ------------------------------------------------------------------------------


@dataclass
class Finished:
    returncode: int
    timed_out: bool
    output: str


_LIVE: set[int] = set()  # process groups of the children running now
MAX_PIDS = 128  # processes and threads a child may have at once, where a pids cgroup can be made


class PidsCgroup:
    """A pids cgroup (v2, or v1's pids hierarchy) that caps a child's processes, so that a fork bomb stops at
    MAX_PIDS; a no-op where cgroups are not writable. ``kill()`` ends every process in it, even ones that left
    the child's process group."""

    ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/pids"))

    @classmethod
    def root(cls) -> Path | None:
        """The writable pids hierarchy, if there is one."""
        for root in cls.ROOTS:
            v2 = (root / "cgroup.controllers").is_file() and "pids" in (root / "cgroup.controllers").read_text()
            if (v2 or root.name == "pids") and (root / "cgroup.procs").is_file() and os.access(root, os.W_OK):
                return root
        return None

    def __init__(self):
        self.path = None
        if root := self.root():
            try:
                path = Path(tempfile.mkdtemp(prefix="grade-", dir=root))
                (path / "pids.max").write_text(str(MAX_PIDS))
                self.path = path
            except OSError:
                pass

    def wrap(self, argv: list[str]) -> list[str]:
        """argv started from inside the cgroup: a shell joins it, then becomes argv, so nothing runs outside."""
        if not self.path:
            return argv
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *argv]

    def kill(self) -> None:
        if not self.path:
            return
        for _ in range(50):
            try:
                pids = [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
            except OSError:
                break
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, os.WNOHANG)  # orphans come to this process (a subreaper): reap them
                except (ProcessLookupError, ChildProcessError):
                    pass
            time.sleep(0.02)
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.02)


def _become_subreaper() -> None:
    """Orphaned processes of a child come to this process, not to init, so that PidsCgroup.kill can reap them."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _stop(signum, frame) -> None:
    """SIGTERM or SIGINT: kill every child's process group, then exit, so that the temporary folders go too."""
    for pgid in list(_LIVE):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    raise SystemExit(128 + signum)


def run_sandboxed(argv: list[str], cwd: Path, timeout: float) -> Finished:
    """Run argv in its own session; kill its process group at the timeout or once it exits; cap its output."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "TMPDIR": str(cwd), "LANG": "C.UTF-8",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cgroup = PidsCgroup()
    proc = subprocess.Popen(cgroup.wrap(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    _LIVE.add(proc.pid)
    deadline = time.monotonic() + timeout
    head, tail, dropped = bytearray(), b"", 0
    fd, timed_out, eof = proc.stdout.fileno(), False, False

    def read(wait: float) -> bool:  # False at the end of the output
        nonlocal tail, dropped
        if not select.select([fd], [], [], wait)[0]:
            return True
        chunk = os.read(fd, 1 << 16)
        keep = chunk[: OUTPUT_CAP - len(head)]
        head.extend(keep)
        tail = (tail + chunk[len(keep):])[-OUTPUT_CAP:]
        dropped += len(chunk) - len(keep)
        return bool(chunk)

    try:
        while proc.poll() is None:
            wait = min(0.05, deadline - time.monotonic())
            if wait <= 0:
                timed_out = True
                break
            if eof:  # the child closed its output but runs on
                time.sleep(wait)
            else:
                eof = not read(wait)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the child's own forks too
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        cgroup.kill()
        _LIVE.discard(proc.pid)
    drain_until = time.monotonic() + 1.0  # processes that left the group may still hold the pipe
    while not eof and time.monotonic() < drain_until:
        eof = not read(0.05)
    proc.stdout.close()
    dropped -= len(tail)
    text = head.decode(errors="replace")
    if dropped > 0:
        text += f"\n[... {dropped} bytes of output dropped ...]\n"
    return Finished(proc.returncode, timed_out, text + tail.decode(errors="replace"))


def bubblewrap_works() -> bool:
    """Whether bubblewrap is installed and may create namespaces here (Docker's default profile forbids it)."""
    global _BWRAP
    if _BWRAP is None:
        try:
            _BWRAP = subprocess.run(["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
                                     *_system_links(), "/usr/bin/true"], capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _BWRAP = False
    return _BWRAP


_BWRAP: bool | None = None


def _system_links() -> list[str]:
    """/bin, /lib, ... as the host has them: symbolic links into /usr (merged /usr) or read-only folders."""
    args = []
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    return args


def bubblewrap_argv(sandbox: Path, inner: list[str]) -> list[str]:
    """inner, run by bubblewrap in new user, PID, network, IPC and UTS namespaces that see only the system's
    programs and libraries, this Python, the harness and the sandbox folder: no grader checks, no other
    submission, no results path. Every process the submission starts dies with the namespace."""
    prefixes = sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)})
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr",
            *_system_links(), "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for prefix in prefixes:
        if not prefix.startswith("/usr/"):
            argv += ["--ro-bind", prefix, prefix]
    for name in ("harness.py", "probes.py", "wire.py"):
        argv += ["--ro-bind", str(HARNESS.with_name(name)), f"/grader/{name}"]
    argv += ["--bind", str(sandbox), "/work", "--chdir", "/work", "--uid", "65534", "--gid", "65534", "--"]
    return argv + inner


def run_problem(problem: str, sandbox: Path, timeout: float, mode: str = "bwrap") -> dict | str:
    """Probe outputs of ``problem`` from a child that imports sandbox/codebase/gan.py, or why there are none."""
    result = sandbox / "result.bin"
    if mode == "bwrap":
        inner = [sys.executable, "-I", "/grader/harness.py", f"/work/{GAN}", problem, "/work/result.bin"]
        argv = bubblewrap_argv(sandbox, inner + [str(int(timeout) + 5)])
    else:
        argv = [sys.executable, "-I", str(HARNESS), str(sandbox / GAN), problem, str(result), str(int(timeout) + 5)]
    try:
        finished = run_sandboxed(argv, sandbox, timeout)
    except OSError as error:
        return f"the grading process could not start ({error})"
    if finished.timed_out:
        return _with_output(f"stopped at the time limit of {timeout:g} s (an endless loop, or waiting forever?)",
                            finished)
    try:
        outputs = _load_result(result)
    except FileNotFoundError:
        code = finished.returncode
        if mode == "bwrap" and 128 < code < 128 + 65:  # bubblewrap's init reports a signal as 128 + its number
            code = 128 - code
        how = f"was killed by signal {_signal_name(-code)}" if code < 0 else f"exited with status {code}"
        return _with_output(f"the grading process {how} before reporting (a crash, an error at import, or a "
                            "sys.exit / os._exit in gan.py?)", finished)
    except Exception as error:  # noqa: BLE001 - anything unreadable the child left
        return _with_output(f"the grading process left unreadable results ({type(error).__name__})", finished)
    return outputs if isinstance(outputs, dict) else "the grading process returned malformed results"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _with_output(message: str, finished: Finished) -> str:
    output = finished.output.strip()
    return f"{message}\n--- output of gan.py ---\n{output}" if output else message


def _load_result(path: Path) -> dict:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # not a symlink, not a FIFO that blocks
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RESULT_BYTES:
            raise ValueError("not a regular file of sane size")
        data = f.read(MAX_RESULT_BYTES + 1)
    return wire.decode(data)


# ---- Scoring ---------------------------------------------------------------------------------------------------


def pick_sandbox(name: str = "auto") -> str:
    """"bwrap" (bubblewrap namespaces) or "process" (a child process group only); "auto" takes bwrap if it works."""
    if name == "auto":
        return "bwrap" if bubblewrap_works() else "process"
    if name == "bwrap" and not bubblewrap_works():
        raise RuntimeError("bubblewrap cannot create namespaces here: install it (apt-get install bubblewrap) or "
                           "allow user namespaces; --sandbox process runs without them")
    return name


def grade(zip_path: Path, timeout: float = DEFAULT_TIMEOUT, sandbox: str = "auto") -> dict:
    """The results.json content for the ZIP (or folder) at ``zip_path``."""
    mode = pick_sandbox(sandbox)
    _become_subreaper()
    start = time.monotonic()
    sub = read_submission(zip_path)
    source = sub.members.get(GAN)
    if isinstance(source, bytes):
        modules = [n for n in STARTER if n.startswith("codebase/") and n.endswith(".py") and n != GAN]
        package = starter_files(names=modules)
        package[GAN] = (source, 0o644)
        with tempfile.TemporaryDirectory(prefix="grade-", ignore_cleanup_errors=True) as work:
            sandboxes = {p: Path(work, p) for p in checks.PROBLEMS}
            for box in sandboxes.values():
                for name, (content, _) in package.items():
                    (box / name).parent.mkdir(parents=True, exist_ok=True)
                    (box / name).write_bytes(content)
            with ThreadPoolExecutor(len(sandboxes)) as pool:
                futures = {p: pool.submit(run_problem, p, box, timeout, mode) for p, box in sandboxes.items()}
                outcomes = {p: future.result() for p, future in futures.items()}
    elif sub.fatal:
        outcomes = dict.fromkeys(checks.PROBLEMS, sub.fatal)
    else:
        found = sorted(n for n in sub.members) + [n.split("'")[1] for n in sub.notes if n.startswith("ignored")]
        seen = f" (found: {', '.join(found[:10])}{', ...' if len(found) > 10 else ''})" if found else " (it is empty)"
        outcomes = dict.fromkeys(checks.PROBLEMS, f"{GAN}: {source}" if source else
                                 f"no {GAN} in the submission{seen}: expected {GAN}, at the top or under one folder")
    grids = {p: sub.fatal or check_grid(sub.grid(run), run) for p, run in RUNS.items()}
    notes = sub.notes + ([sub.fatal] if sub.fatal else []) + [f"student code ran in sandbox mode: {mode}"]
    return results(outcomes, grids, notes, time.monotonic() - start)


def results(outcomes: dict[str, dict | str], grids: dict[str, str | None], notes: list[str],
            seconds: float) -> dict:
    """Gradescope's results.json from each problem's probe outputs (or failure) and each grid's verdict."""
    tests = []
    for number, problem in checks.PROBLEMS.items():
        outcome = outcomes[number]
        if isinstance(outcome, dict):
            verdicts = checks.evaluate(number, outcome)
        else:  # the whole problem failed: the full message once, its first line on the other checks
            first = outcome.splitlines()[0]
            verdicts = [(check, outcome if i == 0 else f"{first} (see {number}.1)")
                        for i, check in enumerate(problem.checks)]
        for i, (check, message) in enumerate(verdicts, 1):
            tests.append(_test(f"{number}.{i}", f"{number} {problem.function}: {check.name}", check.points, message))
        run = RUNS[number]
        tests.append(_test(f"{number}.{len(verdicts) + 1}", f"{number} sample grid {run}/fake_<step>.png",
                           GRID_POINTS, grids[number], passed="a valid PNG of sane size"))
    score = sum(test["score"] for test in tests)
    top = sum(test["max_score"] for test in tests)
    return {"score": score, "execution_time": round(seconds, 1), "visibility": "visible",
            "output": "\n".join([f"Score {score:g} / {top:g}."] + notes), "tests": tests}


def _test(number: str, name: str, points: float, message: str | None, passed: str = "passed") -> dict:
    return {"name": name, "number": number, "score": 0.0 if message else float(points), "max_score": float(points),
            "status": "failed" if message else "passed", "output": message or passed}


def write_results(content: dict, path: Path) -> None:
    """Write results.json atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(tmp, path)


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive, finite number of seconds, got {text}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zip", type=Path, help="the student's hw3.zip, or a folder of the files it would hold")
    parser.add_argument("-o", "--out", type=Path, default=Path("results.json"), help="where to write results.json")
    parser.add_argument("--timeout", type=_timeout, default=DEFAULT_TIMEOUT,
                        help="seconds allowed per problem (default: %(default)s)")
    parser.add_argument("--sandbox", choices=["auto", "bwrap", "process"], default="auto",
                        help="bwrap: bubblewrap namespaces (auto picks it where it works); process: a child process "
                             "group only, for machines without user namespaces (weaker)")
    args = parser.parse_args(argv)
    if not args.zip.exists():
        parser.error(f"{args.zip}: no such file or folder")
    if not args.zip.is_dir() and not zipfile.is_zipfile(args.zip):
        print(f"warning: {args.zip} is not a ZIP file; it is graded as an unreadable submission", file=sys.stderr)
    out_dir = args.out.parent if str(args.out.parent) else Path(".")
    if not out_dir.is_dir():
        parser.error(f"-o {args.out}: the folder {out_dir} does not exist")
    if not os.access(out_dir, os.W_OK | os.X_OK) or (args.out.exists() and not os.access(args.out, os.W_OK)):
        parser.error(f"-o {args.out}: cannot write there")
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    _become_subreaper()
    unfinished = "grading did not finish"
    try:
        write_results(results(dict.fromkeys(checks.PROBLEMS, unfinished), dict.fromkeys(RUNS, unfinished),
                              [], 0.0), args.out)
    except OSError as error:
        parser.error(f"-o {args.out}: cannot write there ({error.strerror})")
    try:
        mode = pick_sandbox(args.sandbox)
    except RuntimeError as error:
        parser.error(f"--sandbox bwrap: {error}")
    content = grade(args.zip, args.timeout, mode)
    write_results(content, args.out)
    print(content["output"].splitlines()[0])
    fatal = [n for n in content["output"].splitlines()[1:] if "not graded" in n or "cannot read" in n]
    if fatal:
        sys.exit(f"error: {fatal[-1]}")


if __name__ == "__main__":
    main()
