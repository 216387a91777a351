"""Loss values of codebase/gan.py against hand computations, stability at extreme logits, analytic WGAN-GP cases."""
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from codebase import gan

pytestmark = pytest.mark.usefixtures("one_thread")


def _sigmoid(h):
    return 1.0 / (1.0 + math.exp(-h))


class FirstPixel(nn.Module):
    """A 'discriminator' whose logit is the first pixel: the test chooses the logits through x."""

    def forward(self, x, y=None):
        h = x.flatten(1)[:, 0]
        return h if y is None else h + y.to(h.dtype)  # conditional: the label shifts the logit


def _images(logits):
    x = torch.zeros(len(logits), 1, 28, 28, dtype=torch.float64)
    x[:, 0, 0, 0] = torch.tensor(logits, dtype=torch.float64)
    return x


REAL, FAKE = [-2.0, 0.5, 3.0], [1.0, -1.5, 0.0]


def test_nonsaturating_losses_match_hand_computation():
    d = FirstPixel()
    expected_d = (sum(-math.log(_sigmoid(h)) for h in REAL) / 3
                  + sum(-math.log(1 - _sigmoid(h)) for h in FAKE) / 3)
    expected_g = sum(-math.log(_sigmoid(h)) for h in FAKE) / 3
    assert_close(gan.nonsaturating_d_loss(d, _images(REAL), _images(FAKE)).item(), expected_d)
    assert_close(gan.nonsaturating_g_loss(d, _images(FAKE)).item(), expected_g)


def test_minimax_g_loss_matches_hand_computation():
    expected = sum(math.log(1 - _sigmoid(h)) for h in FAKE) / 3
    assert_close(gan.minimax_g_loss(FirstPixel(), _images(FAKE)).item(), expected)


def test_conditional_losses_pass_labels_to_d():
    d, y = FirstPixel(), torch.tensor([1, 0, 2])
    shifted_real = [h + k for h, k in zip(REAL, [1, 0, 2])]
    shifted_fake = [h + k for h, k in zip(FAKE, [1, 0, 2])]
    expected_d = (sum(-math.log(_sigmoid(h)) for h in shifted_real) / 3
                  + sum(-math.log(1 - _sigmoid(h)) for h in shifted_fake) / 3)
    assert_close(gan.nonsaturating_d_loss(d, _images(REAL), _images(FAKE), y).item(), expected_d)


@pytest.mark.parametrize("loss_fn", [gan.nonsaturating_g_loss, gan.minimax_g_loss])
@pytest.mark.parametrize("h", [1e4, -1e4])
def test_losses_and_gradients_finite_at_extreme_logits(loss_fn, h):
    x_real = _images([h, -h]).float().requires_grad_()
    x_fake = _images([h, -h]).float().requires_grad_()
    d_loss = gan.nonsaturating_d_loss(FirstPixel(), x_real, x_fake)
    g_loss = loss_fn(FirstPixel(), x_fake)
    (d_loss + g_loss).backward()
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    assert torch.isfinite(x_real.grad).all() and torch.isfinite(x_fake.grad).all()
    # -log sigmoid(-1e4) = 1e4 (+ e^-1e4): the real at -1e4 costs 1e4 / 2 after the mean, the fake at +1e4 as much.
    assert_close(d_loss.item(), 1e4, rtol=1e-6, atol=0)


def test_nonsaturating_g_gradient_survives_where_minimax_vanishes():
    # D confidently rejects the fake (logit -20): d(-log D)/dh = -(1 - sigmoid(h)) ~ -1; d log(1-D)/dh = -sigmoid(h) ~ 0.
    for loss_fn, expected in ((gan.nonsaturating_g_loss, -(1 - _sigmoid(-20.0))), (gan.minimax_g_loss, -_sigmoid(-20.0))):
        x = _images([-20.0]).requires_grad_()
        loss_fn(FirstPixel(), x).backward()
        assert_close(x.grad[0, 0, 0, 0].item(), expected, rtol=1e-6, atol=1e-30)


class Linear(nn.Module):
    """Linear critic D(x) = <w, x>: its input gradient is w everywhere, so the penalty is (||w|| - 1)^2."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x, y=None):
        return (x * self.w).flatten(1).sum(1)


@pytest.mark.parametrize("norm, penalty", [(1.0, 0.0), (2.0, 1.0), (0.5, 0.25)])
def test_wasserstein_gp_linear_critic(norm, penalty):
    torch.manual_seed(0)
    w = torch.randn(1, 28, 28, dtype=torch.float64)
    d = Linear(w / w.norm() * norm)
    x_real, x_fake = torch.randn(5, 1, 28, 28, dtype=torch.float64), torch.randn(5, 1, 28, 28, dtype=torch.float64)
    wd = (d.w * x_fake).sum() / 5 - (d.w * x_real).sum() / 5
    d_loss = gan.wasserstein_gp_d_loss(d, x_real, x_fake)
    assert_close(d_loss, wd + 10 * penalty)
    # The penalty reaches D's parameters: d/dw [10 (||w|| - 1)^2] = 20 (||w|| - 1) w / ||w||.
    d_loss.backward()
    expected_grad = (x_fake.mean(0) - x_real.mean(0)) + 20 * (norm - 1) * d.w.detach() / norm
    assert_close(d.w.grad, expected_grad)
    assert_close(gan.wasserstein_g_loss(d, x_fake), -(d.w * x_fake).sum() / 5)


def test_gradient_penalty_is_per_sample_over_all_pixels():
    # D(x) = sum(x^2) / 2 has input gradient x. With x_real == x_fake the mix is x whatever alpha is,
    # so the penalty is mean over samples of (||x_i|| - 1)^2, the norm over all 784 pixels of sample i.
    class Square(nn.Module):
        def forward(self, x, y=None):
            return x.square().flatten(1).sum(1) / 2

    x = torch.randn(4, 1, 28, 28, dtype=torch.float64) * torch.tensor([0.01, 0.03, 0.05, 0.1]).view(4, 1, 1, 1)
    norms = [math.sqrt(sum(v * v for v in xi.flatten().tolist())) for xi in x]
    expected = sum((n - 1) ** 2 for n in norms) / 4
    assert_close(gan.gradient_penalty(Square(), x, x).item(), expected)


class ConstantG(nn.Module):
    """A generator whose output does not depend on z, so the handout functions' values are known exactly."""

    def __init__(self, logits):
        super().__init__()
        self.dim_z = 3
        self.x = _images(logits)
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, z, y=None):
        return self.x * self.scale + 0 * z.sum()


def test_handout_functions_match_per_network_losses():
    d, g = FirstPixel(), ConstantG(FAKE)
    x_real = _images(REAL)
    d_loss, g_loss = gan.loss_nonsaturating(g, d, x_real, device="cpu")
    assert_close(d_loss, gan.nonsaturating_d_loss(d, x_real, g.x))
    assert_close(g_loss, gan.nonsaturating_g_loss(d, g.x))
    d_loss, g_loss = gan.loss_minimax(g, d, x_real, device="cpu")
    assert_close(g_loss, gan.minimax_g_loss(d, g.x))
    y = torch.tensor([2, 1, 0])
    d_loss, g_loss = gan.conditional_loss_nonsaturating(g, d, x_real, y, device="cpu")
    assert_close(d_loss, gan.nonsaturating_d_loss(d, x_real, g.x, y))
    assert_close(g_loss, gan.nonsaturating_g_loss(d, g.x, y))
    # g_loss reaches G's parameters; d_loss does not (the fake is detached for the D step).
    assert g_loss.requires_grad and not d_loss.requires_grad


def test_handout_wasserstein_uses_lambda_10():
    torch.manual_seed(1)
    w = torch.randn(1, 28, 28, dtype=torch.float64)
    d = Linear(w / w.norm() * 3.0)  # penalty (3 - 1)^2 = 4 for every alpha
    g = ConstantG(FAKE)
    x_real = _images(REAL)
    d_loss, g_loss = gan.loss_wasserstein_gp(g, d, x_real, device="cpu")
    wd = (d.w * g.x).sum() / 3 - (d.w * x_real).sum() / 3
    assert_close(d_loss, wd + 10 * 4.0)
    assert_close(g_loss, -(d.w * g.x).sum() / 3)
