"""End-to-end runs of the training loop on tiny synthetic IDX data: outputs, resume, interruption, NaN, bad flags."""
import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from codebase import cli
from codebase import gan
from codebase.checkpoint import load_checkpoint
from codebase.config import TrainingError, build_models
from codebase.outputs import class_ordered_reals
from codebase.train import train
from tests.conftest import train_config

N_TRAIN = 128  # training images of the synthetic data (conftest.data_dir)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def _weights(out):
    state = load_checkpoint(Path(out) / "checkpoint.pt")
    return state["step"], {**{f"g.{k}": v for k, v in state["g"].items()}, **{f"d.{k}": v for k, v in state["d"].items()}}


def test_one_epoch_writes_every_output(data_dir, tmp_path):
    result = train(train_config(data_dir, tmp_path / "run"))
    out = tmp_path / "run"
    assert result["step"] == 64 and not result["interrupted"]  # 128 images / batch 2
    assert sorted(p.name for p in out.glob("fake_*.png")) == ["fake_0050.png", "fake_0064.png"]
    for name in ("real.png", "losses.png", "config.json"):
        assert (out / name).is_file()
    assert Image.open(out / "fake_0064.png").size == (302, 302)  # 10 x 28 + 11 x 2 padding
    assert Image.open(out / "latest_x3.png").size == (906, 906)  # the same grid, 3x larger, to look at
    latest = Image.open(out / "fake_0064.png").convert("RGB").resize((906, 906), Image.NEAREST)
    assert latest.tobytes() == Image.open(out / "latest_x3.png").convert("RGB").tobytes()
    assert json.loads((out / "config.json").read_text())["total_steps"] == 64
    with open(out / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, 65))
    assert all(math.isfinite(float(r["d_loss"])) and math.isfinite(float(r["g_loss"])) for r in rows)
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["step"] == 64 and state["config"]["loss_type"] == "nonsaturating"
    assert {"g", "d", "g_opt", "d_opt", "rng"} <= state.keys()


@pytest.mark.parametrize("loss_type, conditional",
                         [("wasserstein_gp", False), ("minimax", False), ("nonsaturating", True)])
def test_every_gan_trains(data_dir, tmp_path, loss_type, conditional):
    out = tmp_path / "run"
    result = train(train_config(data_dir, out, batch_size=16, loss_type=loss_type, conditional=conditional))
    assert result["step"] == 8 and (out / "fake_0008.png").is_file()
    step, before = _weights(out)
    assert step == 8
    fresh = build_models(train_config(data_dir, out, conditional=conditional), torch.device("cpu"))
    assert not torch.equal(before["g.fc.0.weight"], fresh[0].fc[0].weight)  # G actually moved


def test_same_seed_same_weights_other_seed_other_weights(data_dir, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train(train_config(data_dir, tmp_path / name, batch_size=16, seed=seed))
    _, a = _weights(tmp_path / "a")
    _, b = _weights(tmp_path / "b")
    _, c = _weights(tmp_path / "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert (tmp_path / "a" / "fake_0008.png").read_bytes() == (tmp_path / "b" / "fake_0008.png").read_bytes()


def _run(*args, cwd):
    """Start run_gan.py with its output in files (a full pipe would block it), one thread per process."""
    log = open(Path(cwd) / f"log{time.monotonic_ns()}.txt", "w+")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_gan.py"), *args], cwd=cwd, text=True,
                            stdout=log, stderr=log, env=env)
    proc.log = log
    return proc


def _output(proc, timeout=120):
    proc.wait(timeout=timeout)
    proc.log.seek(0)
    return proc.log.read()


def test_ctrl_c_then_resume_reaches_the_same_weights(data_dir, tmp_path):
    common = ["--data_dir", str(data_dir), "--batch_size", "2", "--num_epochs", "2", "--device", "cpu", "--no_metrics"]
    full = _run(*common, "--out_dir", "full", cwd=tmp_path)
    part = _run(*common, "--out_dir", "part", cwd=tmp_path)
    ckpt = tmp_path / "part" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and part.poll() is None:
        time.sleep(0.01)
    part.send_signal(signal.SIGINT)
    err = _output(part)
    assert part.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    step, _ = _weights(tmp_path / "part")
    assert 50 <= step < 128  # stopped part-way, after finishing a step
    resumed = _run(*common, "--out_dir", "part", "--resume", cwd=tmp_path)
    _output(resumed), _output(full)
    assert resumed.returncode == 0 and full.returncode == 0
    step_full, w_full = _weights(tmp_path / "full")
    step_part, w_part = _weights(tmp_path / "part")
    assert step_full == step_part == 128
    for k in w_full:
        assert torch.equal(w_full[k], w_part[k]), k
    assert (tmp_path / "full" / "losses.csv").read_text() == (tmp_path / "part" / "losses.csv").read_text()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    good = gan.loss_nonsaturating

    def turning_nan(*args, device):
        calls["n"] += 1  # two calls per step, the D step's then the G step's, after the two of the pre-flight step
        d_loss, g_loss = good(*args, device=device)
        return (d_loss * float("nan") if calls["n"] > 112 else d_loss), g_loss

    monkeypatch.setattr(gan, "loss_nonsaturating", turning_nan)
    with pytest.raises(TrainingError, match=r"d_loss became nan at step 56.*checkpoint.*kept"):
        train(train_config(data_dir, tmp_path / "run"))
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 50


def test_training_calls_the_students_function(data_dir, tmp_path, monkeypatch):
    """What trains is codebase/gan.py's function: here one whose g_loss, -mean(x_fake), is never a softplus."""
    def brighter(g, d, x_real, *, device):
        x_fake = g(torch.randn(len(x_real), g.dim_z, device=device))
        return d(x_real).mean() - d(x_fake.detach()).mean(), -x_fake.mean()

    monkeypatch.setattr(gan, "loss_nonsaturating", brighter)
    train(train_config(data_dir, tmp_path / "run", batch_size=16))
    with open(tmp_path / "run" / "losses.csv") as f:
        g_losses = [float(row["g_loss"]) for row in csv.DictReader(f)]
    assert g_losses[-1] < min(g_losses[:2]) - 0.2  # G got brighter step after step


def _leaky(detach: bool):
    """The reference loss, with or without x_fake.detach() in d_loss, and with terms that would move the other
    network if the loop took each loss's gradient w.r.t. both: the loop must train exactly as the reference."""
    def loss(g, d, x_real, *, device):
        x_fake = g(torch.randn(len(x_real), g.dim_z, device=device))
        fake_for_d = x_fake.detach() if detach else x_fake
        d_loss = F.softplus(-d(x_real)).mean() + F.softplus(d(fake_for_d)).mean()
        g_loss = F.softplus(-d(x_fake)).mean()
        if not detach:
            d_loss = d_loss + 1e3 * sum(p.sum() for p in g.parameters())  # must not reach G
            g_loss = g_loss + 1e3 * sum(p.sum() for p in d.parameters() if p.requires_grad)  # must not reach D
        return d_loss, g_loss
    return loss


def test_each_loss_moves_only_its_own_network(data_dir, tmp_path, monkeypatch):
    weights = []
    for detach in (True, False):
        monkeypatch.setattr(gan, "loss_nonsaturating", _leaky(detach))
        train(train_config(data_dir, tmp_path / str(detach), batch_size=16))
        weights.append(_weights(tmp_path / str(detach))[1])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_an_unwritten_stub_stops_with_one_line_and_writes_nothing(data_dir, tmp_path, monkeypatch):
    def loss_wasserstein_gp(g, d, x_real, *, device):
        raise NotImplementedError("loss_wasserstein_gp: hint")

    monkeypatch.setattr(gan, "loss_wasserstein_gp", loss_wasserstein_gp)
    with pytest.raises(TrainingError, match=r"^codebase/gan.py: loss_wasserstein_gp is not written yet \(handout 4.5\)$"):
        train(train_config(data_dir, tmp_path / "run", loss_type="wasserstein_gp"))
    assert not (tmp_path / "run").exists()


def test_a_bug_in_the_loss_keeps_its_traceback_and_writes_nothing(data_dir, tmp_path, monkeypatch):
    def buggy(g, d, x_real, *, device):
        raise NotImplementedError("a helper of the student's")  # raised deeper than the handout function

    monkeypatch.setattr(gan, "loss_nonsaturating", lambda *a, **k: buggy(*a, **k))
    with pytest.raises(NotImplementedError, match="a helper"):
        train(train_config(data_dir, tmp_path / "run"))
    monkeypatch.setattr(gan, "loss_nonsaturating", lambda g, d, x, *, device: (x.sum(), x.sum()))
    with pytest.raises(TrainingError, match=r"d_loss \(the first value the function returns\) does not depend on D's"):
        train(train_config(data_dir, tmp_path / "run2"))
    monkeypatch.setattr(gan, "loss_nonsaturating", lambda g, d, x, *, device: (x, x))
    with pytest.raises(TrainingError, match="d_loss must be a scalar tensor that depends on"):
        train(train_config(data_dir, tmp_path / "run3"))


def test_existing_run_needs_resume_or_overwrite(data_dir, tmp_path):
    train(train_config(data_dir, tmp_path / "run", batch_size=16))
    with pytest.raises(TrainingError, match="--resume.*--overwrite"):
        train(train_config(data_dir, tmp_path / "run", batch_size=16))
    with pytest.raises(TrainingError, match="differ"):
        train(train_config(data_dir, tmp_path / "run", batch_size=16, seed=3, resume=True))
    assert train(train_config(data_dir, tmp_path / "run", batch_size=16, num_epochs=2, resume=True))["step"] == 16
    assert (tmp_path / "run" / "fake_0016.png").exists()
    assert train(train_config(data_dir, tmp_path / "run", batch_size=16, overwrite=True))["step"] == 8
    assert sorted(p.name for p in (tmp_path / "run").glob("fake_*.png")) == ["fake_0008.png"]  # no stale grids


def test_resume_reports_missing_or_corrupt_checkpoint(data_dir, tmp_path):
    with pytest.raises(TrainingError, match="no checkpoint"):
        train(train_config(data_dir, tmp_path / "run", resume=True))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="not a readable checkpoint"):
        train(train_config(data_dir, tmp_path / "run", resume=True))


@pytest.mark.parametrize("flags, words", [
    (["--num_epochs", "0"], "expected a positive integer"),
    (["--loss_type", "hinge"], "invalid choice"),
    (["--lr", "nan"], "expected a positive number"),
    (["--device", "tpu"], "invalid choice"),
    (["--resume", "--overwrite"], "contradict"),
])
def test_bad_flags_get_argparse_errors(flags, words, capsys):
    parser = cli.make_parser("test", ["nonsaturating", "wasserstein_gp", "minimax"])
    with pytest.raises(SystemExit) as e:
        cli.config_from_args(parser, parser.parse_args(flags))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "usage:" in err


def test_default_flags_match_the_handout():
    parser = cli.make_parser("test", ["nonsaturating", "wasserstein_gp", "minimax"])
    cfg = cli.config_from_args(parser, parser.parse_args([]))
    assert (cfg.loss_type, cfg.num_epochs, cfg.batch_size, cfg.out_dir) == ("nonsaturating", None, 64, "out_nonsaturating")
    cfg = cli.config_from_args(parser, parser.parse_args(["--loss_type", "wasserstein_gp"]))
    assert cfg.out_dir == "out_wasserstein_gp"
    parser = cli.make_parser("test", None)
    cfg = cli.config_from_args(parser, parser.parse_args([]), loss_type="nonsaturating", conditional=True)
    assert cfg.out_dir == "out_nonsaturating_conditional"


def test_conditional_grid_columns_are_classes(data_dir):
    from codebase.data import load_fashion_mnist

    images, labels = load_fashion_mnist("train", data_dir)
    grid = class_ordered_reals(images, labels)  # (100, 28, 28), row-major 10 x 10
    lookup = {images[i].numpy().tobytes(): int(labels[i]) for i in range(len(images))}
    assert [lookup[grid[i].numpy().tobytes()] for i in range(100)] == [i % 10 for i in range(100)]


def test_resuming_after_gan_py_changed_says_the_weights_come_from_the_old_code(data_dir, tmp_path, monkeypatch,
                                                                                 capsys):
    train(train_config(data_dir, tmp_path / "run", batch_size=16))
    capsys.readouterr()
    train(train_config(data_dir, tmp_path / "run", batch_size=16, num_epochs=2, resume=True))
    assert "changed since" not in capsys.readouterr().out  # the same code: nothing to say
    edited = tmp_path / "gan.py"  # the student fixed a loss after training with the old one
    edited.write_text(Path(gan.__file__).read_text() + "\n# fixed\n")
    monkeypatch.setattr(gan, "__file__", str(edited))
    train(train_config(data_dir, tmp_path / "run", batch_size=16, num_epochs=3, resume=True))
    out = capsys.readouterr().out
    assert "codebase/gan.py changed since" in out and "use --overwrite instead of --resume" in out


def _student(tmp_path, slug, name):
    """Function ``name`` of the reference gan.py with the catalogued mistake ``slug``, from a file named gan.py."""
    from grading.child.probes import load_module
    from tests.grading import mutants

    mutant = next(m for m in mutants.MUTANTS if m.slug == slug)
    path = tmp_path / "student" / "gan.py"
    path.parent.mkdir()
    source = mutants.apply((ROOT / "codebase" / "gan.py").read_text(), mutant)
    path.write_text(source)
    return getattr(load_module(path, f"student_{slug}"), name), source


def test_an_in_place_change_names_its_line_of_gan_py(data_dir, tmp_path, monkeypatch):
    loss, source = _student(tmp_path, "interpolates_built_in_place_on_the_detached_fakes", "loss_wasserstein_gp")
    line = next(n for n, text in enumerate(source.splitlines(), 1) if "x_hat.mul_(" in text)
    monkeypatch.setattr(gan, "loss_wasserstein_gp", loss)
    with pytest.raises(TrainingError) as raised:
        train(train_config(data_dir, tmp_path / "run", loss_type="wasserstein_gp"))
    assert not (tmp_path / "run").exists()
    said = str(raised.value)
    assert f"gan.py line {line} changes a tensor in place that autograd needs" in said, said
    assert ".detach() shares memory" in said and "Hint:" not in said


@pytest.mark.parametrize("slug, name, says", [
    ("losses_returned_in_the_wrong_order", "loss_nonsaturating", "return (d_loss, g_loss) in that order"),
    ("losses_returned_as_Python_numbers", "loss_wasserstein_gp", "d_loss is a Python number: return a tensor, "
                                                                 "not .item()"),
])
def test_a_wrong_return_is_named_as_such(data_dir, tmp_path, monkeypatch, slug, name, says):
    loss, _ = _student(tmp_path, slug, name)
    monkeypatch.setattr(gan, name, loss)
    with pytest.raises(TrainingError, match=re.escape(says)):
        train(train_config(data_dir, tmp_path / "run", loss_type=name.removeprefix("loss_")))
    assert not (tmp_path / "run").exists()  # stopped by the pre-flight step, before anything was written


def test_a_function_that_returns_no_pair_is_named_before_anything_is_written(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(gan, "loss_nonsaturating", lambda g, d, x, *, device: {"d_loss": x.sum(), "g_loss": x.sum()})
    with pytest.raises(TrainingError, match=r"returned a dict: return \(d_loss, g_loss\), a pair"):
        train(train_config(data_dir, tmp_path / "run"))
    assert not (tmp_path / "run").exists()
