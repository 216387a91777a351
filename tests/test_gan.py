"""The reference codebase/gan.py beyond the starter's public checks (tests/test_losses.py): the minimax gradient
vanishing where the non-saturating one survives, and fakes scored under the labels they were drawn for."""
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from codebase import gan
from test_losses import FixedG, FirstPixel, images

pytestmark = pytest.mark.usefixtures("one_thread")


def _sigmoid(h):
    return 1.0 / (1.0 + math.exp(-h))


@pytest.mark.parametrize("name, expected", [("loss_nonsaturating", -(1 - _sigmoid(-20.0))),
                                            ("loss_minimax", -_sigmoid(-20.0))])
def test_g_gradient_survives_or_vanishes_where_d_rejects_the_fake(name, expected):
    # D confidently rejects the fake (logit -20): d(-log D)/dh = -(1 - sigmoid(h)) ~ -1, d log(1 - D)/dh = -sigmoid(h).
    g, d = FixedG([-20.0]), FirstPixel()
    _, g_loss = getattr(gan, name)(g, d, images([3.0]), device="cpu")
    (grad,) = torch.autograd.grad(g_loss, [g.scale])  # dL/dscale = dL/dh * h, with h = -20
    assert_close(grad.item(), -20.0 * expected, rtol=1e-6, atol=1e-30)


class LabelShift(nn.Module):
    """h(x, y) = first pixel + 10 y: scoring an image under another label than intended changes the loss."""

    def forward(self, x, y):
        return x.flatten(1)[:, 0] + 10 * y.to(x.dtype)


class LabelledG(FixedG):
    """Fixed images whose first pixel is -10 y, so that h(G(z, y), y) = 0 exactly under their own label."""

    def forward(self, z, y):
        self.calls.append((z, y))
        x = torch.zeros(len(z), 1, 28, 28, dtype=torch.float64)
        x[:, 0, 0, 0] = -10 * y.to(torch.float64)
        return x * self.scale


def test_conditional_scores_reals_and_fakes_under_their_own_labels():
    y = torch.tensor([0, 3, 7, 9])
    x_real = images([-10.0 * k + 1.5 for k in y.tolist()])  # h = 1.5 under its own label
    d_loss, g_loss = gan.conditional_loss_nonsaturating(LabelledG([0.0]), LabelShift(), x_real, y, device="cpu")
    softplus = lambda h: math.log1p(math.exp(h))  # noqa: E731
    assert_close(d_loss.item(), softplus(-1.5) + softplus(0.0))
    assert_close(g_loss.item(), softplus(0.0))
