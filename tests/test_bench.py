"""bench/speed.py: its FLOP count of a training step against a hand count, and its --quick run's output.

No timing is asserted: only that the figures exist, are consistent with each other, and that the counted FLOPs
equal what the layers' shapes say.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from codebase import gan
from codebase.train import update
from synthetic import make_dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import speed  # noqa: E402

pytestmark = pytest.mark.xdist_group("bench")  # one worker runs the module: its tests share its benchmark run

B, DIM_Z, P = 8, 16, 28 * 28


class LinearG(nn.Module):
    """z (B, dim_z) -> x (B, 1, 28, 28) through one linear layer: 2 * B * dim_z * 784 FLOPs forward."""

    def __init__(self):
        super().__init__()
        self.dim_z = DIM_Z
        self.fc = nn.Linear(DIM_Z, P)

    def forward(self, z, y=None):
        return torch.tanh(self.fc(z)).view(-1, 1, 28, 28)


class LinearD(nn.Module):
    """x (B, 1, 28, 28) -> logits (B,) through one linear layer: 2 * B * 784 FLOPs forward."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(P, 1)

    def forward(self, x, y=None):
        return self.fc(x.flatten(1)).squeeze(1)


def _step_flops(loss_fn):
    torch.manual_seed(0)
    g, d = LinearG(), LinearD()
    g_opt, d_opt = torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters())
    x_real = torch.rand(B, 1, 28, 28) * 2 - 1
    return speed.count_step_flops(lambda: update(loss_fn, (g, d, x_real), g, d, g_opt, d_opt, "cpu"))


def test_flops_of_a_nonsaturating_step_match_a_hand_count():
    # A matmul of (m, k) by (k, n) is 2mkn FLOPs; each loss call runs G once and D three times (real, fake
    # detached, fake): 2BzP + 3 * 2BP. Step (1) calls it and backpropagates d_loss to D's weight only (two
    # weight gradients, 2 * 2BP); step (2) calls it again and backpropagates g_loss through D's input (2BP)
    # to G's weight (2BzP).
    per_call = 2 * B * DIM_Z * P + 3 * 2 * B * P
    expected = 2 * per_call + 2 * 2 * B * P + 2 * B * P + 2 * B * DIM_Z * P
    counted = _step_flops(gan.loss_nonsaturating)
    assert counted["flops"] == expected
    assert counted["uncounted"] == [] and counted["matmul_dtypes"] == ["torch.float32"]


def test_flops_of_a_wgan_gp_step_count_the_double_backward():
    # As above, with the penalty: each call also runs D on x_hat (2BP) and its input gradient with create_graph
    # (2BP), and D runs twice more (real, fake detached, fake: 3 * 2BP). Step (1) backpropagates d_loss to D's weight
    # through the real and fake branches (2 * 2BP) and through the penalty's input gradient (one more matmul, 2BP);
    # step (2) as for the non-saturating GAN. Stock FlopCounterMode fails here on autograd.grad of a leaf.
    per_call = 2 * B * DIM_Z * P + 5 * 2 * B * P
    expected = 2 * per_call + 3 * 2 * B * P + 2 * B * P + 2 * B * DIM_Z * P
    assert _step_flops(gan.loss_wasserstein_gp)["flops"] == expected


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    make_dataset(tmp / "data", n_train=128, n_test=10)
    cmd = [sys.executable, str(ROOT / "bench" / "speed.py"), "--quick", "--gans", "wasserstein_gp",
           "--data_dir", str(tmp / "data"), "--json", str(tmp / "speed.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, json.loads((tmp / "speed.json").read_text())


def test_quick_run_prints_every_table(quick_run):
    stdout, _ = quick_run
    for heading in ("matmul peak (this run): fp32", "GFLOP/step", "heavy ops without a FLOP count: none",
                    "epoch time against batch size", "short epochs", "no load beside it"):
        assert heading in stdout
    assert stdout.count("wasserstein_gp") >= 3  # the main table, the sweep and the epochs


def test_busy_runs_its_load_beside_the_block_and_ends_it_with_the_block():
    # --busy N: not in the quick run above, where a core kept busy for its whole length would slow the suite
    def loads() -> list[str]:
        found = subprocess.run(["pgrep", "-f", "sum.i . i for i in range.10000"], capture_output=True, text=True)
        return found.stdout.split()

    with speed.Busy(2) as busy:
        assert len(busy.procs) == 2 and all(proc.poll() is None for proc in busy.procs)
        assert {str(proc.pid) for proc in busy.procs} <= set(loads())
    assert all(proc.poll() is not None for proc in busy.procs)
    assert not {str(proc.pid) for proc in busy.procs} & set(loads())  # the load is gone


def test_quick_run_figures_are_consistent(quick_run):
    _, result = quick_run
    s = result["summary"]["current"]["wasserstein_gp"]
    for key in ("ms_per_step", "startup_s", "first_step_ms", "peak_rss_mb", "flops", "gflops_per_s"):
        assert math.isfinite(s[key]) and s[key] > 0, key
    assert s["startup_s"] >= s["import_s"] > 0
    assert s["epoch_s"] == pytest.approx(s["ms_per_step"] / 1000 * (60_000 // 64))
    assert s["gflops_per_s"] == pytest.approx(s["flops"] / 1e9 / (s["ms_per_step"] / 1000))
    assert set(s["batch_sweep"]) == {"32", "64"} and len(s["epochs"]) == 2
    assert "aten.convolution_backward" in s["by_op"]  # the real networks' convolutions were counted
    assert result["peak_gflops"]["float32"] > 0
