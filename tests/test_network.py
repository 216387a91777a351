"""Shapes and ranges of the networks, and the projection form of the conditional discriminator."""
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from codebase.network import ConditionalDiscriminator, ConditionalGenerator, Discriminator, Generator

pytestmark = pytest.mark.usefixtures("one_thread")


def test_generator_shape_and_range():
    torch.manual_seed(0)
    g = Generator(dim_z=64)
    x = g(torch.randn(5, 64) * 50)  # large z drives tanh towards its limits
    assert x.shape == (5, 1, 28, 28)
    assert x.min() >= -1 and x.max() <= 1
    assert g.dim_z == 64


def test_discriminator_returns_one_logit_per_image():
    h = Discriminator()(torch.randn(7, 1, 28, 28))
    assert h.shape == (7,)


def test_conditional_generator_depends_on_label():
    torch.manual_seed(0)
    g = ConditionalGenerator(dim_z=16, num_classes=10).eval()
    z = torch.randn(1, 16).repeat(10, 1)
    x = g(z, torch.arange(10))
    assert x.shape == (10, 1, 28, 28)
    assert (x[1:] - x[:1]).abs().flatten(1).amax(1).min() > 0  # every class changes the image


def test_projection_discriminator_equals_y_transpose_of_a_phi_plus_b():
    torch.manual_seed(0)
    d = ConditionalDiscriminator(num_classes=10)
    x, y = torch.randn(6, 1, 28, 28), torch.tensor([0, 3, 9, 3, 1, 7])
    phi = d.phi(x)  # (B, F)
    A, b = d.linear.weight, d.linear.bias  # (K, F), (K,)
    y_onehot = F.one_hot(y, 10).float()  # (B, K)
    expected = ((phi @ A.T + b) * y_onehot).sum(1)  # y^T (A phi(x) + b)
    assert_close(d(x, y), expected)
    # The same image scored under another class uses another row of A.
    assert not torch.allclose(d(x, (y + 1) % 10), expected)
