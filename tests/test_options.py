"""The loop's speed and quality options: bf16 autocast (``--amp``), the moving average of G's weights (``--ema``),
and the smoothed loss plot."""
import copy

import numpy as np
import pytest
import torch

from codebase import checkpoint as checkpoint_mod
from codebase import cli
from codebase import train as train_mod
from codebase.checkpoint import load_checkpoint
from codebase.config import Config, amp_dtype, build_models
from codebase.metrics import load_generator
from codebase.outputs import smooth
from codebase.train import train, update, update_ema
from tests.conftest import train_config

N_TRAIN = 32  # training images of the synthetic data (conftest.data_dir)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def bf16(monkeypatch):
    """bf16 autocast on, whatever this machine's CPU: the loop must be correct wherever it is chosen."""
    monkeypatch.setattr(train_mod, "amp_dtype", lambda cfg, device: torch.bfloat16 if cfg.amp else None)


# ---- bf16 autocast ---------------------------------------------------------------------------------------------


def test_amp_dtype_follows_the_flag_and_the_device(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert amp_dtype(Config(), cpu) is None  # off by default
    assert amp_dtype(Config(amp=True), cpu) is torch.bfloat16
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert amp_dtype(Config(amp=True), cpu) is None  # emulated bf16 is slower than fp32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert amp_dtype(Config(amp=True), torch.device("cuda")) is torch.bfloat16


@pytest.mark.parametrize("amp, conv_dtype", [(torch.bfloat16, torch.bfloat16), (None, torch.float32)])
def test_update_runs_the_loss_under_autocast_and_keeps_fp32_weights(amp, conv_dtype):
    cfg = Config(loss_type="wasserstein_gp")
    torch.manual_seed(0)
    g, d = build_models(cfg, torch.device("cpu"))
    seen = []
    d.phi[0].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    g_opt, d_opt = torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters())
    before = copy.deepcopy(d.state_dict())
    d_loss, g_loss = update(train_mod.loss_function(cfg)[1], (g, d, torch.rand(4, 1, 28, 28) * 2 - 1),
                            g, d, g_opt, d_opt, torch.device("cpu"), amp)
    assert seen and set(seen) == {conv_dtype}
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    assert all(p.dtype == torch.float32 for p in [*g.parameters(), *d.parameters()])
    assert any(not torch.equal(before[k], v) for k, v in d.state_dict().items())


@pytest.mark.parametrize("loss_type, conditional",
                         [("nonsaturating", False), ("wasserstein_gp", False), ("nonsaturating", True)])
def test_every_gan_trains_under_bf16_with_finite_losses(bf16, data_dir, tmp_path, loss_type, conditional):
    train(train_config(data_dir, tmp_path / "run", loss_type=loss_type, conditional=conditional, amp=True))
    rows = (tmp_path / "run" / "losses.csv").read_text().splitlines()[1:]
    assert len(rows) == N_TRAIN // 2  # a row per step: batches of 2, one epoch
    assert np.isfinite([[float(v) for v in r.split(",")[2:]] for r in rows]).all()


def test_bf16_resume_is_bit_identical(bf16, data_dir, tmp_path):
    train(train_config(data_dir, tmp_path / "full", num_epochs=2, amp=True))
    train(train_config(data_dir, tmp_path / "part", num_epochs=1, amp=True))
    train(train_config(data_dir, tmp_path / "part", num_epochs=2, resume=True, amp=True))
    full, part = (load_checkpoint(tmp_path / run / "checkpoint.pt") for run in ("full", "part"))
    for key in ("g", "d", "g_ema"):
        for name, value in full[key].items():
            assert torch.equal(value, part[key][name]), (key, name)


def test_bf16_and_fp32_runs_differ(bf16, data_dir, tmp_path):
    """The flag really changes what runs (else the tests above would prove nothing about bf16)."""
    train(train_config(data_dir, tmp_path / "bf16", num_epochs=1, amp=True))
    train(train_config(data_dir, tmp_path / "fp32", num_epochs=1))
    a, b = (load_checkpoint(tmp_path / run / "checkpoint.pt")["g"] for run in ("bf16", "fp32"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


# ---- Moving average of G ---------------------------------------------------------------------------------------


def test_update_ema_matches_the_formula():
    torch.manual_seed(0)
    g, _ = build_models(Config(), torch.device("cpu"))
    g_ema = copy.deepcopy(g)
    for p in g.parameters():
        p.data.normal_()
    g.fc[1].running_mean.normal_()
    g.fc[1].num_batches_tracked.fill_(7)
    old = {k: v.clone() for k, v in g_ema.state_dict().items()}
    for step, decay in ((0, 0.1), (1000, 0.99)):  # (1 + 0) / (10 + 0) = 0.1 caps the decay at the start
        update_ema(g_ema, g, 0.99, step)
        new = g.state_dict()
        for k, v in g_ema.state_dict().items():
            if v.is_floating_point():
                torch.testing.assert_close(v, decay * old[k] + (1 - decay) * new[k])
            else:
                assert torch.equal(v, new[k])
        old = {k: v.clone() for k, v in g_ema.state_dict().items()}


def test_grids_checkpoint_and_metrics_use_the_average(data_dir, tmp_path):
    train(train_config(data_dir, tmp_path / "run"))
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["config"]["ema"] == 0.99
    assert any(not torch.equal(state["g"][k], v) for k, v in state["g_ema"].items())
    g, _ = load_generator(tmp_path / "run")
    for k, v in g.state_dict().items():
        assert torch.equal(v, state["g_ema"][k]), k


def test_ema_zero_keeps_no_average(data_dir, tmp_path):
    train(train_config(data_dir, tmp_path / "run", ema=0.0))
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert "g_ema" not in state
    g, _ = load_generator(tmp_path / "run")
    for k, v in g.state_dict().items():
        assert torch.equal(v, state["g"][k]), k


def test_resume_refuses_another_ema_or_amp(data_dir, tmp_path):
    train(train_config(data_dir, tmp_path / "run"))
    for change in ({"ema": 0.0}, {"amp": True}):
        with pytest.raises(checkpoint_mod.TrainingError, match=next(iter(change))):
            train(train_config(data_dir, tmp_path / "run", num_epochs=2, resume=True, **change))


@pytest.mark.parametrize("flags, ema, amp", [([], 0.99, False), (["--ema", "0"], 0.0, False),
                                             (["--ema", "0.999", "--amp"], 0.999, True)])
def test_flags(flags, ema, amp):
    parser = cli.make_parser("test", ["nonsaturating"])
    cfg = cli.config_from_args(parser, parser.parse_args(flags))
    assert (cfg.ema, cfg.amp) == (ema, amp)


@pytest.mark.parametrize("value", ["1", "-0.1", "nan", "x"])
def test_bad_ema_gets_an_argparse_error(value, capsys):
    parser = cli.make_parser("test", ["nonsaturating"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--ema", value])
    assert "expected a number in [0, 1)" in capsys.readouterr().err


# ---- Loss plot -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, window", [(1, 1), (10, 3), (937, 19), (50, 51)])
def test_smooth_is_a_centred_moving_average(n, window):
    values = np.random.default_rng(0).normal(size=n)
    half = window // 2
    expected = [values[max(0, i - half):i + half + 1].mean() for i in range(n)]
    np.testing.assert_allclose(smooth(list(values), window), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("conditional", [False, True])
def test_d_gives_fp32_logits_under_autocast(conditional):
    """The student's loss math (softplus, the penalty's norm) runs in fp32 even when the convolutions run in bf16."""
    _, d = build_models(Config(conditional=conditional), torch.device("cpu"))
    y = torch.arange(2) if conditional else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert d.phi(torch.rand(2, 1, 28, 28)).dtype == torch.bfloat16
        assert d(torch.rand(2, 1, 28, 28), y).dtype == torch.float32
