"""Child side of python -m grading grade: run each problem's probes on a student's gan.py, send the raw outputs back.

    python -I grading/child/harness.py SANDBOX/codebase/gan.py PROBLEMS RESULT_FD CPU_SECONDS TIMEOUT PARALLEL \
        [MAX_PROCESSES]

grading/sandbox starts it in a fresh session with a scrubbed environment; ``-I`` keeps PYTHONPATH, user
site-packages and the working directory off sys.path. This script lowers its own resource limits, leaves the
grader's session keyring for an empty one and installs a seccomp filter (confine.py), imports torch, loads
probes.py and wire.py by path (not as part of a package: the checks and their expected values are never imported
here) and notes torch's global settings. Only then does it write the ``ready`` line (ready.py) and import the
student's file as ``codebase.gan`` (its package root SANDBOX goes on sys.path, so ``from codebase import network``
and ``from .network import ...`` find the starter's copy), and run the probes, which set torch's settings back
before each call. That happens in one process per problem of PROBLEMS (comma-separated), forked once torch is
imported (workers.py): each with its own folder, output, CPU-time limit (CPU_SECONDS) and time limit (TIMEOUT),
PARALLEL at once. Whatever the student's code does, the grader only reads what comes through the pipe RESULT_FD:
one record per problem (workers.py), its outputs in wire.py's format (data with size caps, never a pickle).
An exception at import is shown as Python shows it (the traceback), and the problem's process exits with 1.

PROBLEM ``probe`` imports no gan.py: it tries each bound the results may name (grading/sandbox/probe.py).
"""
import importlib.util
import os
import resource
import sys
from pathlib import Path

MEMORY_BYTES = 6 << 30  # address space; importing torch alone maps about 3 GB
FILE_BYTES = 64 << 20  # largest file the child may write (its result goes through a pipe)
HERE = Path(__file__).resolve().parent


def _limit(kind: int, value: int, grace: int = 0) -> None:
    """Soft limit ``value``, hard limit ``grace`` above it (RLIMIT_CPU: SIGXCPU at the soft limit, so that the
    grader can tell the child's CPU limit from a SIGKILL it did not send)."""
    hard = resource.getrlimit(kind)[1]
    soft = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (soft, soft + grace if hard == resource.RLIM_INFINITY else min(soft + grace, hard)))


def _load(name: str, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    gan_path, problems, result_fd, cpu_seconds, timeout, parallel, *max_processes = sys.argv[1:]
    problems = problems.split(",")
    result = os.fdopen(int(result_fd), "wb")
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_CPU, int(cpu_seconds) * (len(problems) + 1), grace=5)  # each problem's process: its own
    _limit(resource.RLIMIT_AS, MEMORY_BYTES)
    _limit(resource.RLIMIT_FSIZE, FILE_BYTES)
    if max_processes:  # a uid of this child's own: the limit counts only its processes
        _limit(resource.RLIMIT_NPROC, int(max_processes[0]))
    sys.path.insert(0, str(Path(gan_path).resolve().parents[1]))
    os.chdir(Path(gan_path).resolve().parents[1])  # the child's own folder (chroot leaves it at the jail's root)

    confine = _load("grading_confine", HERE / "confine.py")
    facts = {"keyring": confine.new_session_keyring(), "filter": confine.install_filter()}

    import faulthandler
    import importlib
    import signal

    import torch

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # at the time limit the grader asks where the code is
    wire = _load("grading_wire", HERE / "wire.py")
    # torch's global settings as training starts them, before the student's import-time code may change them
    # (the probes set them back before each call): the default dtype, device, grad mode, ...
    _load("grading_problems", HERE / "problems.py")  # what probes.py imports by that name here
    probes = _load("grading_probes", HERE / "probes.py")
    state = probes.torch_state()
    torch.set_num_threads(1)
    facts["torch"] = torch.__version__
    result.write(_load("grading_ready", HERE / "ready.py").line(facts))
    result.flush()
    if problems == ["probe"]:
        bounds = _load("grading_bounds", HERE / "bounds.py")
        bounds.run(result, confine)
        os._exit(0)

    def work(problem: str, out) -> None:  # in the problem's own process
        _limit(resource.RLIMIT_CPU, int(cpu_seconds), grace=5)
        sys.argv[2] = problem
        # As the run scripts import it: codebase.gan inside the starter's package, so that both
        # `from codebase.network import ...` and `from .network import ...` work.
        student = importlib.import_module("codebase.gan")
        out.write(wire.frame(wire.encode(probes.run(student, problem, state))))
        out.flush()

    workers = _load("grading_workers", HERE / "workers.py")
    workers.run(result, problems, float(timeout), int(parallel), work)
    os._exit(0)  # the workers end with os._exit too: no student's atexit handler or non-daemon thread runs


if __name__ == "__main__":
    main()
