"""Faults in the user's scripts: each ends in one line that names the fix, with nothing lost and nothing stale.

Full and read-only disks are real tmpfs mounts when the tests run as root with mount rights (as in CI), and skip
otherwise; other read and write failures are injected as the OSError the system would raise.
"""
import errno
import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch

from codebase import evaluate
from codebase import checkpoint as checkpoint_mod
from codebase import cli
from codebase import train as train_mod
from codebase.checkpoint import load_checkpoint, save_checkpoint
from codebase.config import Config, TrainingError, build_models
from codebase.train import train
from tests.conftest import ROOT, train_config

N_TRAIN = 32  # training images of the synthetic data (conftest.data_dir)
config = partial(train_config, batch_size=4)  # 8 steps an epoch

pytestmark = pytest.mark.usefixtures("one_thread")


def _script(*args, cwd=ROOT, script="run_gan.py"):
    """Run a script; (exit code, stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stderr


def _one_line(code, err, *words):
    assert code not in (0, None), err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("\r", "run", "out"))]
    assert lines and lines[-1].startswith("error: "), err
    for word in words:
        assert word in lines[-1], err


# ---- Resume: the run's own target ------------------------------------------------------------------------------


def test_resume_without_num_epochs_continues_to_the_runs_own_target(data_dir, tmp_path):
    full = train(config(data_dir, tmp_path / "full", num_epochs=3))
    part = tmp_path / "part"
    # An interrupted 3-epoch run: one epoch trained, its target saved as 3 epochs.
    train(config(data_dir, part, num_epochs=1))
    state = load_checkpoint(part / "checkpoint.pt")
    state["config"]["num_epochs"] = 3
    save_checkpoint(part / "checkpoint.pt", state)
    result = train(config(data_dir, part, resume=True))  # no --num_epochs
    assert result["step"] == full["step"] == 24 and not result["interrupted"]
    assert json.loads((part / "config.json").read_text())["num_epochs"] == 3
    assert load_checkpoint(part / "checkpoint.pt")["config"]["num_epochs"] == 3


def test_resume_extends_with_a_larger_target_and_refuses_a_smaller_one(data_dir, tmp_path):
    run = tmp_path / "run"
    train(config(data_dir, run, num_epochs=2))
    assert train(config(data_dir, run, num_epochs=3, resume=True))["step"] == 24
    with pytest.raises(TrainingError, match="already holds 24 steps \\(3 epochs\\), more than --num_epochs 1"):
        train(config(data_dir, run, num_epochs=1, resume=True))
    assert json.loads((run / "config.json").read_text())["num_epochs"] == 3  # config.json still tells the truth


def test_extending_a_finished_run_removes_its_old_scores_until_it_finishes_again(data_dir, tmp_path):
    run = tmp_path / "run"
    train(config(data_dir, run))
    (run / "metrics.json").write_text("{}")  # the finished run's scores
    original = train_mod._StopRequest.__enter__

    def stop_soon(self):  # Ctrl-C during the extension
        original(self)
        self.requested = True
        return self

    train_mod._StopRequest.__enter__ = stop_soon
    try:
        result = train(config(data_dir, run, num_epochs=2, resume=True))
    finally:
        train_mod._StopRequest.__enter__ = original
    assert result["interrupted"] and not (run / "metrics.json").exists()


# ---- Fresh runs leave nothing of an older one ------------------------------------------------------------------


def test_overwrite_removes_every_output_of_the_old_run(data_dir, tmp_path):
    run = tmp_path / "run"
    train(config(data_dir, run, batch_size=2))  # 16 steps: fake_0016.png
    (run / "metrics.json").write_text('{"fid": 1.0}')
    (run / "checkpoint.pt.tmp").write_bytes(b"partial")
    (run / "notes.txt").write_text("mine")
    train(config(data_dir, run, batch_size=4, overwrite=True))  # 8 steps
    assert sorted(p.name for p in run.glob("fake_*.png")) == ["fake_0008.png"]
    assert not (run / "metrics.json").exists() and not (run / "checkpoint.pt.tmp").exists()
    assert (run / "notes.txt").read_text() == "mine"  # only files the project writes are removed


# ---- Filesystem errors -----------------------------------------------------------------------------------------


def test_a_failed_checkpoint_write_leaves_no_partial_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})

    def full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 128 vs 64")

    monkeypatch.setattr(checkpoint_mod.torch, "save", full_disk)
    with pytest.raises(TrainingError, match="could not write .*checkpoint.pt .*previous checkpoint is intact"):
        save_checkpoint(path, {"step": 2})
    assert not (tmp_path / "checkpoint.pt.tmp").exists()
    assert torch.load(path, weights_only=True) == {"step": 1}


def _mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


@pytest.fixture
def small_disk(tmp_path, data_dir):
    """A tmpfs with room for one checkpoint and the run's other files, but not for a second checkpoint beside it."""
    train(config(data_dir, tmp_path / "probe", batch_size=2))
    size = (tmp_path / "probe" / "checkpoint.pt").stat().st_size
    mount = tmp_path / "small"
    _mount_tmpfs(mount, f"size={int(size * 1.6) // 1024}k")
    yield mount
    subprocess.run(["umount", "-l", str(mount)])


@pytest.fixture
def read_only_disk(tmp_path):
    mount = tmp_path / "ro"
    _mount_tmpfs(mount, "size=1m")
    (mount / "existing").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)])


def test_disk_full_during_training_is_one_line_and_keeps_the_last_checkpoint(data_dir, small_disk):
    out = small_disk / "run"
    code, err = _script("--data_dir", data_dir, "--batch_size", "2", "--num_epochs", "8", "--device", "cpu",
                        "--no_metrics", "--out_dir", out)
    _one_line(code, err, "could not write", "space", "--resume")
    assert not (out / "checkpoint.pt.tmp").exists()
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 50  # the last good one is intact


@pytest.mark.parametrize("where", ["existing", "new"])
def test_read_only_out_dir_is_one_line(data_dir, read_only_disk, where):
    code, err = _script("--data_dir", data_dir, "--batch_size", "4", "--device", "cpu", "--out_dir",
                        read_only_disk / where)
    _one_line(code, err, "read-only")


def test_a_read_only_out_dir_is_said_before_the_models_are_built(data_dir, read_only_disk, monkeypatch):
    def built(*args, **kwargs):
        raise AssertionError("the models were built first")

    monkeypatch.setattr(train_mod, "build_models", built)
    with pytest.raises(OSError) as e:
        train_mod.train(train_config(data_dir, read_only_disk / "new" / "run"))
    assert e.value.errno == errno.EROFS and e.value.filename == str(read_only_disk / "new" / "run")


def test_out_dir_that_is_a_file_is_one_line(data_dir, tmp_path):
    (tmp_path / "taken").write_text("a file")
    code, err = _script("--data_dir", data_dir, "--batch_size", "4", "--device", "cpu", "--out_dir",
                        tmp_path / "taken")
    _one_line(code, err, "is a file, not a folder")
    assert (tmp_path / "taken").read_text() == "a file"


def test_a_write_error_becomes_one_line_but_a_bug_in_gan_py_keeps_its_traceback(data_dir, tmp_path, monkeypatch,
                                                                                capsys):
    monkeypatch.setattr(sys, "argv", ["run_gan.py", "--data_dir", str(data_dir), "--device", "cpu", "--batch_size", "4",
                                      "--out_dir", str(tmp_path / "run"), "--no_metrics"])

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "run" / "config.json"))

    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", denied)
        with pytest.raises(SystemExit) as e:
            cli.main("test", ["nonsaturating"])
    assert "could not write" in str(e.value.code) and "no permission" in str(e.value.code)

    from codebase import gan

    def buggy(g, d, x_real, *, device):
        open("/nonexistent/student/file")  # an OSError raised by the student's own code

    buggy.__code__ = buggy.__code__.replace(co_filename=str(ROOT / "codebase" / "gan.py"))
    monkeypatch.setattr(gan, "loss_nonsaturating", buggy)
    with pytest.raises(FileNotFoundError):
        cli.main("test", ["nonsaturating"])


# ---- Bad values and messages -----------------------------------------------------------------------------------


def test_batch_size_one_is_refused_with_the_reason(capsys):
    parser = cli.make_parser("test", ["nonsaturating"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--batch_size", "1"])
    assert "at least 2" in capsys.readouterr().err
    with pytest.raises(TrainingError, match="at least 2"):
        train(Config(batch_size=1, device="cpu"))


def test_nan_message_says_what_works(data_dir, tmp_path, monkeypatch):
    from codebase import gan

    original = gan.loss_nonsaturating

    def nan_loss(g, d, x_real, *, device):
        d_loss, g_loss = original(g, d, x_real, device=device)
        return d_loss * float("nan"), g_loss

    monkeypatch.setattr(gan, "loss_nonsaturating", nan_loss)
    with pytest.raises(TrainingError) as e:
        train(config(data_dir, tmp_path / "run"))
    assert "another --out_dir" in str(e.value) and "--overwrite" in str(e.value)
    assert "--resume would continue from the same weights" in str(e.value)


def test_resuming_a_conditional_run_with_run_gan_names_the_right_script(data_dir, tmp_path):
    train(config(data_dir, tmp_path / "run", conditional=True))
    with pytest.raises(TrainingError, match="python run_conditional_gan.py"):
        train(config(data_dir, tmp_path / "run", resume=True))
    train(config(data_dir, tmp_path / "wgan", loss_type="wasserstein_gp"))
    with pytest.raises(TrainingError, match="python run_gan.py --loss_type wasserstein_gp"):
        train(config(data_dir, tmp_path / "wgan", conditional=True, resume=True))


def test_a_corrupt_checkpoint_message_names_no_flag_the_script_lacks(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(TrainingError) as e:
        load_checkpoint(tmp_path / "checkpoint.pt")
    assert "pass --overwrite" not in str(e.value) and "run script with --overwrite" in str(e.value)


def test_conditional_help_shows_its_real_out_dir():
    out = subprocess.run([sys.executable, "run_conditional_gan.py", "--help"], cwd=ROOT, capture_output=True,
                         text=True).stdout
    assert "out_nonsaturating_conditional" in out and "<loss_type>" not in out


# ---- python -m codebase.evaluate -----------------------------------------------------------------------------------------------


def test_evaluate_cuda_without_cuda_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["evaluate", "out_x", "--device", "cuda"])
    with pytest.raises(SystemExit) as e:
        evaluate.main()
    assert e.value.code == 2 and "no CUDA GPU" in capsys.readouterr().err


def test_evaluate_scores_the_good_runs_and_reports_the_bad_one(data_dir, tmp_path, monkeypatch, capsys):
    good = tmp_path / "good"
    cfg = Config(out_dir=str(good), data_dir=str(data_dir), device="cpu")
    g, d = build_models(cfg, torch.device("cpu"))
    good.mkdir()
    save_checkpoint(good / "checkpoint.pt", {"g": g.state_dict(), "d": d.state_dict(), "g_opt": {}, "d_opt": {},
                                             "step": 3, "rng": {}, "config": vars(cfg)})
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "checkpoint.pt").write_bytes(b"garbage")
    monkeypatch.setenv("GAN_METRICS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", ["evaluate", str(good), str(bad), "--n", "20", "--data_dir", str(data_dir),
                                      "--json", str(tmp_path / "scores.json")])
    with pytest.raises(SystemExit) as e:
        evaluate.main()
    captured = capsys.readouterr()
    assert e.value.code and str(bad) in str(e.value.code) and "Traceback" not in str(e.value.code)
    assert str(good) in captured.out  # the good run was scored and printed
    assert list(json.loads((tmp_path / "scores.json").read_text())) == [str(good)]
