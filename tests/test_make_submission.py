"""make_submission.sh: the ZIP holds gan.py and the last grid of each run, or the script names what is missing."""
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _project_copy(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "make_submission.sh", tmp_path)
    (tmp_path / "codebase").mkdir()
    shutil.copy(ROOT / "codebase" / "gan.py", tmp_path / "codebase")
    return tmp_path


def _run(cwd):
    return subprocess.run(["bash", "make_submission.sh"], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})


def test_zip_holds_gan_py_and_each_last_grid(tmp_path):
    root = _project_copy(tmp_path)
    for run in ("out_nonsaturating", "out_wasserstein_gp", "out_nonsaturating_conditional"):
        (root / run).mkdir()
        for step in ("0050", "0900", "0937"):
            (root / run / f"fake_{step}.png").write_bytes(b"png")
    (root / "out_nonsaturating" / "real.png").write_bytes(b"png")
    proc = _run(root)
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(root / "hw3.zip") as z:
        assert sorted(z.namelist()) == ["codebase/gan.py", "out_nonsaturating/fake_0937.png",
                                        "out_nonsaturating_conditional/fake_0937.png",
                                        "out_wasserstein_gp/fake_0937.png"]


def test_missing_runs_are_named_and_left_out(tmp_path):
    root = _project_copy(tmp_path)
    (root / "out_nonsaturating").mkdir()
    (root / "out_nonsaturating" / "fake_0050.png").write_bytes(b"png")
    proc = _run(root)
    assert proc.returncode == 0, proc.stderr
    assert "python run_gan.py --loss_type wasserstein_gp" in proc.stderr
    assert "python run_conditional_gan.py" in proc.stderr
    assert "out_nonsaturating/" not in proc.stderr
    with zipfile.ZipFile(root / "hw3.zip") as z:
        assert sorted(z.namelist()) == ["codebase/gan.py", "out_nonsaturating/fake_0050.png"]


def test_only_a_missing_gan_py_stops_it(tmp_path):
    root = _project_copy(tmp_path)
    (root / "codebase" / "gan.py").unlink()
    proc = _run(root)
    assert proc.returncode != 0 and "codebase/gan.py is missing" in proc.stderr
    assert not (root / "hw3.zip").exists() and "Traceback" not in proc.stderr


def test_the_last_grid_is_the_highest_step_as_a_number(tmp_path):
    root = _project_copy(tmp_path)
    (root / "out_nonsaturating").mkdir()
    for step in ("9950", "12800", "0050"):
        (root / "out_nonsaturating" / f"fake_{step}.png").write_bytes(b"png")
    assert _run(root).returncode == 0
    with zipfile.ZipFile(root / "hw3.zip") as z:
        assert "out_nonsaturating/fake_12800.png" in z.namelist()


def test_help_explains_and_builds_nothing(tmp_path):
    root = _project_copy(tmp_path)
    proc = subprocess.run(["bash", "make_submission.sh", "--help"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0 and "hw3.zip" in proc.stdout and not (root / "hw3.zip").exists()


def test_a_grid_of_an_unfinished_run_is_packed_and_named(tmp_path):
    root = _project_copy(tmp_path)
    for run, last in (("out_nonsaturating", 937), ("out_wasserstein_gp", 800)):
        (root / run).mkdir()
        (root / run / f"fake_{last:04d}.png").write_bytes(b"png")
        (root / run / "config.json").write_text('{"num_epochs": 1, "total_steps": 937}')
    proc = _run(root)
    assert proc.returncode == 0, proc.stderr
    assert ("out_wasserstein_gp/fake_0800.png is from an unfinished run (step 800 of 937); packed all the same. "
            "Finish the run with: python run_gan.py --loss_type wasserstein_gp --resume (or, if you changed "
            "codebase/gan.py since, train it again with: python run_gan.py --loss_type wasserstein_gp --overwrite)"
            ) in proc.stderr
    assert "out_nonsaturating/fake_0937.png is from" not in proc.stderr
    with zipfile.ZipFile(root / "hw3.zip") as z:
        assert "out_wasserstein_gp/fake_0800.png" in z.namelist()


def _zipped(root):
    with zipfile.ZipFile(root / "hw3.zip") as z:
        return sorted(z.namelist())


def test_a_function_still_stubbed_is_named_with_what_the_grader_does(tmp_path):
    root = _project_copy(tmp_path)
    source = (root / "codebase" / "gan.py").read_text()
    start = source.index("def loss_wasserstein_gp")
    body = source.index("    z = torch.randn", start)
    (root / "codebase" / "gan.py").write_text(source[:body] + "    raise NotImplementedError('4.5')\n" + source[body:])
    proc = _run(root)
    assert proc.returncode == 0, proc.stderr
    assert "loss_wasserstein_gp still raises NotImplementedError: the grader gives handout 4.5 0 points" in proc.stderr
    assert "loss_nonsaturating still" not in proc.stderr and _zipped(root) == ["codebase/gan.py"]
    (root / "codebase" / "gan.py").write_text("def loss_nonsaturating(:\n")
    proc = _run(root)
    assert proc.returncode == 0 and "codebase/gan.py does not parse (line 1" in proc.stderr, proc.stderr


def test_a_grid_trained_by_another_gan_py_is_named(tmp_path):
    root = _project_copy(tmp_path)
    digest = hashlib.sha256((root / "codebase" / "gan.py").read_bytes()).hexdigest()
    for run, trained in (("out_nonsaturating", digest), ("out_wasserstein_gp", "0" * 64)):
        (root / run).mkdir()
        (root / run / "fake_0937.png").write_bytes(b"png")
        (root / run / "config.json").write_text(json.dumps({"total_steps": 937, "gan_sha256": trained}))
    proc = _run(root)
    assert proc.returncode == 0, proc.stderr
    assert ("out_wasserstein_gp/fake_0937.png was trained by another version of codebase/gan.py than the one packed"
            in proc.stderr and "python run_gan.py --loss_type wasserstein_gp --overwrite" in proc.stderr)
    assert "out_nonsaturating/fake_0937.png was trained" not in proc.stderr
    assert "out_wasserstein_gp/fake_0937.png" in _zipped(root)


def test_runs_made_in_another_folder_are_found_and_named(tmp_path):
    root = _project_copy(tmp_path / "hw3")
    (root / "codebase" / "out_nonsaturating").mkdir()
    (root / "codebase" / "out_nonsaturating" / "fake_0937.png").write_bytes(b"png")
    proc = subprocess.run(["bash", "../make_submission.sh"], cwd=root / "codebase", capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr
    assert "there is one in out_nonsaturating/" in proc.stderr or "there is one in codebase/out_nonsaturating/" in \
        proc.stderr, proc.stderr
    assert f"Move that folder here ({root})" in proc.stderr
    assert "wrote ../hw3.zip" in proc.stdout and _zipped(root) == ["codebase/gan.py"]
