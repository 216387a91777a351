"""python -m grading grade (grading/grade.py, grading/scoring.py): results complete whatever happens, the part a
student's fault affects gets 0 and the rest is scored, grading ends in time, and a failure of the grading itself is
never a score.

Hostile gan.py files are the reference with some functions redefined at the end. A test about what one child does
with a gan.py runs one problem's child (conftest.one_child); reading uploads is tests/test_submission.py's, the
sandbox against a hostile student tests/test_hostile.py's.
"""
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from grading import grade
from grading import checks, sandbox, scoring
from tests.conftest import (FULL, GRADE, GRIDS, REFERENCE, ROOT, VARIANT, alive, assert_complete, by_problem, descends,
                            grade_here, grids_pass, make_zip, needs_bwrap, one_child)


def test_information_checks_show_failed_when_they_fail():
    """Gradescope colours a test by its status: a 0-point grid check that says "no sample grid" must be red."""
    from grading import scoring

    grids = {"1.2": None, "3.2": "no sample grid in out_nonsaturating_conditional/", "4.5": None}
    judged = {"1.2": {"healthy": True, "realism": 0.7, "classes": 9.8, "copies": 0},
              "3.2": "not judged: there is no valid grid", "4.5": "not judged on this grading machine (no data)"}
    results = scoring.results(dict.fromkeys(grids, "gan.py: missing"), grids, [], 0.0, judged)
    status = {t["name"].split(" (")[0]: t["status"] for t in results["tests"] if not t["max_score"]}
    assert status == {"1.2 sample grid out_nonsaturating/fake_<step>.png": "passed",
                      "1.2 sample grid judged by the classifier": "passed",
                      "3.2 sample grid out_nonsaturating_conditional/fake_<step>.png": "failed",
                      "3.2 sample grid judged by the classifier": "failed",
                      "4.5 sample grid out_wasserstein_gp/fake_<step>.png": "passed",
                      "4.5 sample grid judged by the classifier": "passed"}  # the grader's lack, not the grid's


# ---- Results without children: no gan.py, grids judged --------------------------------------------------------


def test_cli_writes_complete_results_for_a_submission_without_gan_py(tmp_path):
    out = tmp_path / "results.json"
    grade.main([str(make_zip(tmp_path / "hw3.zip", GRIDS)), "-o", str(out)])
    results = json.loads(out.read_text())
    assert_complete(results)
    points, outputs = by_problem(results)
    assert points == {"1.2": 0.0, "3.2": 0.0, "4.5": 0.0}
    assert all("no gan.py in the ZIP (found: out_" in text for text in outputs.values())
    assert grids_pass(results) == ["passed"] * 3


def test_grids_are_judged_weighed_flagged_and_kept(tmp_path):
    from codebase.data import load_fashion_mnist
    from codebase.outputs import save_grid_image

    train, _ = load_fashion_mnist("train")
    test, labels = load_fashion_mnist("test")
    columns = torch.stack([test[labels == c][:10] for c in range(10)], 1).reshape(100, 28, 28)
    noise = torch.randint(0, 256, (100, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    grids = {}
    for run, images in (("out_nonsaturating", train[:100]), ("out_nonsaturating_conditional", columns),
                        ("out_wasserstein_gp", noise)):
        save_grid_image(images.unsqueeze(1).float() / 127.5 - 1, tmp_path / "grid.png")
        grids[f"{run}/fake_0937.png"] = (tmp_path / "grid.png").read_bytes()
    with Image.open(io.BytesIO(grids["out_wasserstein_gp/fake_0937.png"])) as image:  # extras a browser would use
        extras = io.BytesIO()
        image.convert("RGBA").save(extras, "PNG", icc_profile=b"\0" * 128, pnginfo=None)
        grids["out_wasserstein_gp/fake_0937.png"] = extras.getvalue()
    out, keep = tmp_path / "results.json", tmp_path / "kept"
    grade.main([str(make_zip(tmp_path / "hw3.zip", grids)), "-o", str(out), "--grid-points", "1", "--keep", str(keep)])
    results = json.loads(out.read_text())
    assert_complete(results)
    judged = {t["number"][:3]: t for t in results["tests"] if t["name"].endswith("judged by the classifier")}
    assert {p: t["score"] for p, t in judged.items()} == {"1.2": 1.0, "3.2": 1.0, "4.5": 0.0}
    assert "healthy" in judged["3.2"]["output"] and "show their column's class" in judged["3.2"]["output"]
    assert "below what a healthy one-epoch grid reaches" in judged["4.5"]["output"]
    extra = results["extra_data"]
    assert extra["grids"]["1.2"]["copies"] == 100 and extra["grids"]["4.5"]["copies"] == 0
    assert extra["flags"] == [f"{p}: 100 of the 100 samples are real Fashion-MNIST images (or mirrored ones), not "
                              "drawn by a generator" for p in ("1.2", "3.2")]  # training and test images alike
    assert not any("real Fashion-MNIST" in t["output"] for t in results["tests"])  # the flag is for a human only
    assert sorted(p.name for p in keep.iterdir()) == ["1.2.png", "3.2.png", "4.5.png"]  # no gan.py to keep
    with Image.open(keep / "4.5.png") as kept:
        assert kept.mode == "L" and "icc_profile" not in kept.info and "transparency" not in kept.info


def test_without_fashion_mnist_grids_are_not_judged_and_weighed_grids_fail_the_grading(tmp_path):
    path = make_zip(tmp_path / "hw3.zip", GRIDS)
    env = {**os.environ, "FASHION_MNIST_DIR": str(tmp_path / "nowhere")}
    done = subprocess.run([GRADE[0], "-X", "importtime", *GRADE[1:], str(path), "-o", str(tmp_path / "r.json")],
                          env=env, capture_output=True, text=True, timeout=120)
    results = json.loads((tmp_path / "r.json").read_text())
    judged = [t["output"] for t in results["tests"] if t["name"].startswith("1.2 sample grid judged")]
    assert judged[0].startswith("not judged on this grading machine (Fashion-MNIST is not on the grading machine")
    # nothing to score, no grid to judge: no torch (seconds of CPU; on main at 730caab the grids' module loaded it)
    assert "torch" not in [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    assert results["extra_data"]["status"] == "graded" and results["extra_data"]["grids"] == {}
    done = subprocess.run([*GRADE, str(path), "-o", str(tmp_path / "r.json"),
                           "--grid-points", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == grade.GRADING_FAILED and "the grids cannot be judged here" in done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["extra_data"]["status"] == "grading failed"


# ---- Running student code (child processes) --------------------------------------------------------------------


def test_endless_loops_forks_and_floods_of_output_cost_only_their_part(tmp_path):
    # process mode: the children share the host's /tmp with this test, which counts their forks there
    pids = tmp_path / "pids"
    source = REFERENCE + f"""
import os, sys, time
for _ in range(100):
    sys.stdout.write("x" * 1_000_000)  # 100 MB of prints at import

def loss_nonsaturating(*args, **kwargs):
    while True:
        pass

def conditional_loss_nonsaturating(*args, **kwargs):
    children = []
    for _ in range(8):
        pid = os.fork()
        if pid == 0:
            time.sleep(600)
            os._exit(0)
        children.append(pid)
    open({str(pids)!r}, "w").write(" ".join(map(str, children)))
    time.sleep(600)
"""
    timeout = 6.0  # 4.5's 100 MB of prints and its probes, beside two busy problems (torch is imported before)
    results, _ = grade_here(tmp_path, source, timeout=timeout, mode="process")
    points, outputs = by_problem(results)
    assert points == {"1.2": 0.0, "3.2": 0.0, "4.5": 15.0}
    assert "time limit of 6 s" in outputs["1.2"] and "time limit of 6 s" in outputs["3.2"]
    # (that hanging problems wait out one limit together, not one after another: tests/test_batch.py, where the
    # contrast is 20 s against 60 s; here 4.5's own 100 MB of prints, on a loaded machine, can take as long as both)
    assert len(json.dumps(results)) < 40_000  # the 300 MB printed are capped
    assert "bytes of output dropped" in outputs["1.2"]
    forked = [int(pid) for pid in pids.read_text().split()]
    assert len(forked) == 8 and not any(alive(pid) for pid in forked)


def test_crashes_missing_functions_and_a_patched_pytest_cost_only_their_part(tmp_path):
    source = REFERENCE + """
import _pytest.reports  # make pytest report every test as passed: the grader does not use pytest here
_pytest.reports.TestReport.passed = property(lambda self: True)
_pytest.reports.TestReport.failed = property(lambda self: False)

def loss_nonsaturating(g, d, x_real, *, device):  # the minimax G loss in place of the non-saturating one
    x_fake = g(torch.randn(x_real.shape[0], g.dim_z, device=device))
    d_loss = F.softplus(-d(x_real)).mean() + F.softplus(d(x_fake.detach())).mean()
    return d_loss, -F.softplus(d(x_fake)).mean()

def conditional_loss_nonsaturating(*args, **kwargs):
    import ctypes
    ctypes.string_at(0)  # segmentation fault

del loss_wasserstein_gp
"""
    results, _ = grade_here(tmp_path, source)
    points, outputs = by_problem(results)
    # 1.2 fails its g_loss and extreme-logit checks, and so gets no point for how it draws z either
    assert points == {"1.2": 4.0, "3.2": 0.0, "4.5": 0.0}
    assert "g_loss = " in outputs["1.2"]
    assert "killed by signal SIGSEGV" in outputs["3.2"]
    assert "gan.py has no function loss_wasserstein_gp" in outputs["4.5"]
    assert grids_pass(results) == ["passed"] * 3


@pytest.mark.parametrize("source, message", [
    ("import torch\ndef loss_nonsaturating(:\n", "SyntaxError"),
    ("import sys\nsys.exit(0)\n" + VARIANT, "exited with status 0 before reporting"),
    ("import os\nos._exit(0)\n" + VARIANT, "exited with status 0 before reporting"),
    ("raise ImportError('no such module')\n", "ImportError: no such module"),
], ids=["syntax_error", "sys_exit", "os_exit", "import_error"])
def test_a_gan_py_that_does_not_import_is_named_as_such(source, message):
    said = one_child(source)
    assert isinstance(said, str) and message in said, said


def test_another_draw_order_with_a_relative_import_gets_full_marks_whatever_else_the_zip_holds(tmp_path):
    planted = tmp_path / "planted"
    code = f"open({str(planted)!r}, 'w').write('ran')\n"
    members = {
        "conftest.py": code, "pytest.ini": "[pytest]\naddopts = -p no:python\n", "sitecustomize.py": code,
        "codebase/sitecustomize.py": code, "../../escaped.py": code, "/tmp/absolute.py": code,
        "out_nonsaturating/fake_9999.png": "/etc/passwd",  # a symlink
        "out_wasserstein_gp/fake_9999.png": bytes(100 << 20),  # a zip bomb
    }
    source = "from .network import Discriminator  # a relative import, as in a package\n" + VARIANT
    results, _ = grade_here(tmp_path, source, members, symlinks=("out_nonsaturating/fake_9999.png",))
    points, outputs = by_problem(results)
    assert points == FULL
    assert "symbolic link" in outputs["1.2"] and "byte limit" in outputs["4.5"]
    assert grids_pass(results) == ["failed", "passed", "failed"]
    assert not planted.exists() and not (tmp_path.parent.parent / "escaped.py").exists()
    assert not os.path.exists("/tmp/absolute.py")


# ---- The command line ----------------------------------------------------------------------------------------


def test_a_bare_gan_py_scores_full_marks_through_grade_py(tmp_path):
    path = tmp_path / "lee_10070_50070_gan.py"
    path.write_text(REFERENCE)
    grade.main([str(path), "-o", str(tmp_path / "r.json")])
    results = json.loads((tmp_path / "r.json").read_text())
    assert by_problem(results)[0] == FULL


@pytest.mark.parametrize("flags, words", [
    (["--timeout", "-1"], "positive, finite"),
    (["--timeout", "0"], "positive, finite"),
    (["--timeout", "nan"], "positive, finite"),
    (["--timeout", "inf"], "positive, finite"),
    (["-o", "missing/dir/r.json"], "does not exist"),
])
def test_bad_flags_are_usage_errors(tmp_path, monkeypatch, capsys, flags, words):
    monkeypatch.chdir(tmp_path)
    path = make_zip(tmp_path / "hw3.zip", GRIDS)
    with pytest.raises(SystemExit) as e:
        grade.main([str(path), *flags])
    assert e.value.code == 2 and words in capsys.readouterr().err


def test_missing_or_non_zip_input_fails_loudly(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        grade.main([str(tmp_path / "nothing.zip"), "-o", str(tmp_path / "r.json")])
    assert e.value.code == 2 and "no such file" in capsys.readouterr().err
    text = tmp_path / "hw3.zip"
    text.write_text("not a zip")
    with pytest.raises(SystemExit) as e:
        grade.main([str(text), "-o", str(tmp_path / "r.json")])
    assert e.value.code and "cannot read the submission as a ZIP" in str(e.value.code)
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["score"] == 0 and "cannot read the submission as a ZIP" in results["output"]


@pytest.mark.parametrize("mode, parallel", [("process", 3), ("process", 1), ("user", 3),
                                            pytest.param("bwrap", 3, marks=needs_bwrap)])
def test_sigterm_to_the_grader_kills_every_child_and_removes_its_folders(tmp_path, mode, parallel, request,
                                                                          deployment):
    source = REFERENCE + """
import time
time.sleep(600)
"""
    path = make_zip(tmp_path / "hw3.zip", {"codebase/gan.py": source, **GRIDS})
    command = deployment.command if mode == "user" else [*GRADE]
    scratch = Path(tempfile.mkdtemp())  # not under tmp_path: user mode's children must reach their folders
    scratch.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
    env = {**os.environ, "TMPDIR": str(scratch)}
    proc = subprocess.Popen([*command, str(path), "-o", str(tmp_path / "r.json"), "--sandbox", mode,
                             "--parallel", str(parallel)], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def harnesses() -> list[int]:  # this grader's children only: other graders may run on the machine
        found = []
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                if entry.name.isdigit() and b"harness.py" in cmdline and b"\0probe\0" not in cmdline and \
                        alive(int(entry.name)) and descends(int(entry.name), proc.pid):
                    found.append(int(entry.name))
            except OSError:
                pass
        return found

    before = set(harnesses())
    deadline = time.monotonic() + 60
    while len(set(harnesses()) - before) < parallel and time.monotonic() < deadline:
        time.sleep(0.2)
    started = set(harnesses()) - before
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert len(started) >= parallel
    time.sleep(0.5)
    assert not any(alive(pid) for pid in started) and not set(harnesses()) - before  # none started after
    assert list(scratch.iterdir()) == []


# ---- Failures of the grading itself, and what a child's import may change ------------------------------------


def _private_python() -> bool:
    return any(not os.stat(p).st_mode & 0o001 for p in Path(sys.base_prefix).resolve().parents)


@pytest.mark.parametrize("mode", ["auto", "bwrap", "user"])
def test_a_sandbox_that_cannot_start_the_python_is_a_failed_grading_never_a_score(tmp_path, mode):
    # No jail, and this Python in a folder other users cannot enter (pyenv under /root): no sandboxed uid can
    # start it. On main at 712f5a9 auto picked bwrap anyway and scored a correct submission 0 / 35, exit 0.
    if os.geteuid() != 0 or not _private_python():
        pytest.skip("needs root and a Python under a private folder")
    if mode == "bwrap" and not sandbox.bubblewrap_version():
        pytest.skip("bubblewrap cannot create namespaces here")
    path = make_zip(tmp_path / "hw3.zip", {"codebase/gan.py": REFERENCE, **GRIDS})
    run = subprocess.run([*GRADE, str(path), "-o", str(tmp_path / "r.json"),
                          "--sandbox", mode], capture_output=True, text=True, env={**os.environ, "GRADE_JAIL": "off"},
                         timeout=600)
    assert run.returncode == grade.GRADING_FAILED, run.stdout + run.stderr
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["extra_data"]["status"] == scoring.GRADING_FAILED and results["score"] == 0
    assert "could not start the grader's own code" in run.stderr and "python -m grading prepare" in run.stderr


def test_a_child_that_fails_before_it_is_ready_fails_the_grading(tmp_path, monkeypatch):
    # as a child whose Python cannot import torch: it dies before the student's gan.py is imported
    def broken(*args):
        return [sys.executable, "-c", "raise SystemExit(\"ModuleNotFoundError: No module named 'torch'\")"]

    sandbox.pick_mode("process")
    monkeypatch.setattr(sandbox, "harness_argv", broken)
    forgotten = []  # the mode's kept probe is dropped (not this machine's: other tests' gradings use it)
    monkeypatch.setattr(sandbox.probe, "forget", forgotten.append)
    path = make_zip(tmp_path / "hw3.zip", {"codebase/gan.py": REFERENCE, **GRIDS})
    with pytest.raises(scoring.GradingFailed, match="failed before the student's code ran.*No module named 'torch'"):
        scoring.grade(path, mode="process")
    assert set(forgotten) == {"process"}


def test_grading_twice_gives_the_same_messages():
    from tests.grading.mutants import MUTANTS, apply

    uniform = next(m for m in MUTANTS if m.name.startswith("z uniform"))
    source = apply(REFERENCE, uniform)  # its message quotes statistics of the noise the function drew
    first, second = ([message for _, message in checks.evaluate("1.2", one_child(source))] for _ in range(2))
    assert first == second and sum(message is not None for message in first) == 1, first


def test_global_settings_changed_at_import_do_not_change_the_probes(tmp_path):
    source = REFERENCE + """
torch.set_default_dtype(torch.float64)
torch.set_grad_enabled(False)
torch.use_deterministic_algorithms(True)
"""
    results, _ = grade_here(tmp_path, source)
    points, outputs = by_problem(results)
    assert points == FULL, outputs
    assert "1.2, 3.2, 4.5: gan.py changed torch's default dtype (to torch.float64)" in results["output"]


def test_a_child_killed_from_outside_is_the_gradings_failure_not_a_score(tmp_path):
    source = REFERENCE + "\nimport time\ntime.sleep(5)\n"  # time to find it; one not killed then ends normally
    path = make_zip(tmp_path / "hw3.zip", {"codebase/gan.py": source, **GRIDS})
    proc = subprocess.Popen([*GRADE, str(path), "-o", str(tmp_path / "r.json"),
                             "--sandbox", "process"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, killed = time.monotonic() + 60, set()
    while not killed and time.monotonic() < deadline:  # as the machine's OOM killer or an administrator would
        time.sleep(0.5)
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                if entry.name.isdigit() and b"harness.py" in cmdline and b"\0probe\0" not in cmdline and \
                        (entry / "comm").read_text().startswith("python") and descends(int(entry.name), proc.pid):
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed.add(entry.name)
            except OSError:
                pass
    _, err = proc.communicate(timeout=120)
    assert killed and proc.returncode == grade.GRADING_FAILED, err
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["extra_data"]["status"] == scoring.GRADING_FAILED and results["score"] == 0
    assert "the grading failed, not your code" in results["output"] and "SIGKILL" in results["output"]


def test_a_helper_module_of_the_students_is_named_with_what_is_graded():
    source = REFERENCE.replace("import torch\n", "import torch\nfrom codebase.my_helpers import stable_bce\n", 1)
    said = one_child(source)
    assert said.startswith("gan.py imports codebase.my_helpers, which the grader does not have: only "
                           "codebase/gan.py is graded"), said


def test_a_gan_py_that_freezes_its_grading_child_costs_its_own_grading_the_time_limit(monkeypatch):
    # the child's problems run as gan.py's uid: SIGSTOP to the process that forked them stops every record
    monkeypatch.setattr(scoring, "STARTUP_SECONDS", 20.0)  # the child's time beyond its problems' (60 s)
    source = REFERENCE + "\nimport os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\n"
    said = one_child(source, timeout=2.0)
    assert said.startswith("stopped at the grading's time limit of 22 s (2 s per problem, 20 s to start)"), said
