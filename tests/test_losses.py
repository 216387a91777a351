"""Check your loss functions in codebase/gan.py before you train or submit:

    python -m pytest -q tests/test_losses.py

Each test builds tiny networks whose outputs you can work out by hand: a generator that returns fixed images
whatever z is, and a discriminator whose logit is the first pixel of its input. The expected values below are
computed here with plain Python from the handout's formulas. Passing these tests is a good sign, not a grade:
the grader runs other checks too. Tests of a function you have not written yet fail with its NotImplementedError;
``loss_minimax`` (handout 1.1) is optional and skipped until you write it.
"""
import math

import pytest
import torch
from torch import nn

from codebase import gan

REAL, FAKE = [-2.0, 0.5, 3.0], [1.0, -1.5, 0.0]  # the logits D gives the real and the fake images
LABELS = [2, 0, 1]


def softplus(h):
    return max(h, 0.0) + math.log1p(math.exp(-abs(h)))  # log(1 + e^h) = -log sigmoid(-h) = -log(1 - sigmoid(h))


def images(logits):
    """(n, 1, 28, 28) float64 images whose first pixel is the logit that FirstPixel gives them."""
    x = torch.zeros(len(logits), 1, 28, 28, dtype=torch.float64)
    x[:, 0, 0, 0] = torch.tensor(logits, dtype=torch.float64)
    return x


class Fake(nn.Module):
    """A stand-in network: it offers the attributes the real one documents (codebase/network.py), and says so
    when your code asks for another."""

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            raise AttributeError(f"your code asked the test's {type(self).__name__} for {name!r}, which the real "
                                 f"networks do not document: use only {self.documented}") from None


class FixedG(Fake):
    """G(z) = the same images whatever z is (times a parameter equal to 1, so that G has a gradient)."""

    documented = "g.dim_z, g.num_classes and g.width (codebase/network.py's Generator)"

    def __init__(self, logits, dim_z=8, num_classes=10):
        super().__init__()
        self.dim_z, self.num_classes, self.width = dim_z, num_classes, 32
        self.x = images(logits)
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))
        self.calls = []  # (z, y) of every call

    def forward(self, z, y=None):
        self.calls.append((z, y))
        return self.x[torch.arange(len(z)) % len(self.x)] * self.scale


class FirstPixel(Fake):
    """D(x) = w * x[0, 0, 0] + b with w = 1 and b = 0: the logit is the first pixel; records the labels it gets."""

    documented = "d.num_classes (codebase/network.py's Discriminator)"

    def __init__(self):
        super().__init__()
        self.num_classes = 10
        self.w = nn.Parameter(torch.ones((), dtype=torch.float64))
        self.b = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.labels = []

    def forward(self, x, y=None):
        self.labels.append(y)
        return self.w * x.flatten(1)[:, 0] + self.b


class LinearCritic(Fake):
    """D(x) = <w, x>: its gradient w.r.t. x is w everywhere, so the penalty is (||w|| - 1)^2 for every alpha."""

    documented = "d.num_classes (codebase/network.py's Discriminator)"

    def __init__(self, norm):
        super().__init__()
        self.num_classes = 0
        w = torch.randn(1, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        self.w = nn.Parameter(w / w.norm() * norm)

    def forward(self, x, y=None):
        return (x * self.w).flatten(1).sum(1)


def call(name, g, d, x_real, y_real=None):
    function = getattr(gan, name, None)
    if function is None and name == "loss_minimax":
        pytest.skip("loss_minimax (handout 1.1) is optional")
    args = (g, d, x_real) if y_real is None else (g, d, x_real, y_real)
    try:
        return function(*args, device="cpu")
    except NotImplementedError:
        if name == "loss_minimax":
            pytest.skip("loss_minimax (handout 1.1) is optional")
        raise


def nonsaturating(name):
    g, d = FixedG(FAKE), FirstPixel()
    y = torch.tensor(LABELS) if name.startswith("conditional") else None
    return g, d, call(name, g, d, images(REAL), y)


NONSATURATING = ["loss_nonsaturating", "conditional_loss_nonsaturating", "loss_minimax"]
ALL = NONSATURATING + ["loss_wasserstein_gp"]


@pytest.mark.parametrize("name", ALL)
def test_returns_two_scalar_tensors(name):
    g, d = FixedG(FAKE), (LinearCritic(1.0) if name == "loss_wasserstein_gp" else FirstPixel())
    y = torch.tensor(LABELS) if name.startswith("conditional") else None
    losses = call(name, g, d, images(REAL), y)
    assert isinstance(losses, tuple) and len(losses) == 2, "return (d_loss, g_loss)"
    for what, loss in zip(("d_loss", "g_loss"), losses):
        assert isinstance(loss, torch.Tensor) and loss.dim() == 0, f"{what} must be a 0-d tensor: average the batch"


@pytest.mark.parametrize("name", NONSATURATING)
def test_d_loss_value(name):
    _, _, (d_loss, _) = nonsaturating(name)
    expected = sum(softplus(-h) for h in REAL) / 3 + sum(softplus(h) for h in FAKE) / 3  # -log D(x) - log(1 - D(G(z)))
    assert d_loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", NONSATURATING)
def test_g_loss_value(name):
    _, _, (_, g_loss) = nonsaturating(name)
    if name == "loss_minimax":
        expected = -sum(softplus(h) for h in FAKE) / 3  # E[log(1 - D(G(z)))]
    else:
        expected = sum(softplus(-h) for h in FAKE) / 3  # -E[log D(G(z))]
    assert g_loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", NONSATURATING)
def test_each_loss_trains_its_own_network(name):
    g, d, (d_loss, g_loss) = nonsaturating(name)
    d_grads = torch.autograd.grad(d_loss, list(d.parameters()), allow_unused=True, retain_graph=True)
    assert any(grad is not None and grad.abs().sum() > 0 for grad in d_grads), "d_loss sends no gradient to D"
    (g_grad,) = torch.autograd.grad(g_loss, [g.scale], allow_unused=True)
    assert g_grad is not None and g_grad.abs() > 0, "g_loss sends no gradient to G: do not detach x_fake in it"


@pytest.mark.parametrize("name", NONSATURATING)
@pytest.mark.parametrize("h", [1e4, -1e4])
def test_finite_at_extreme_logits(name, h):
    g, d = FixedG([h, -h]), FirstPixel()
    y = torch.tensor([0, 1]) if name.startswith("conditional") else None
    d_loss, g_loss = call(name, g, d, images([h, -h]), y)
    grads = torch.autograd.grad(d_loss + g_loss, [d.w, d.b, g.scale], allow_unused=True)
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss), "work on logits: F.softplus or F.logsigmoid"
    assert all(grad is None or torch.isfinite(grad) for grad in grads)
    # The real image at logit -h and the fake at +h each cost |h| / 2 after the batch mean.
    assert d_loss.item() == pytest.approx(1e4, rel=1e-6)


def test_conditional_loss_gives_labels_to_both_networks():
    g, d, _ = nonsaturating("conditional_loss_nonsaturating")
    assert g.calls and all(y is not None for _, y in g.calls), "call g(z, y)"
    assert d.labels and all(y is not None for y in d.labels), "call d(x, y)"
    labels = torch.tensor(LABELS)
    batches = [chunk for y in d.labels if y.numel() % len(labels) == 0 for chunk in y.view(-1, len(labels))]
    assert any(torch.equal(y, labels) for y in batches), "score real images under their labels"  # alone or in one cat


def test_z_has_one_row_per_sample():
    g, _, _ = nonsaturating("loss_nonsaturating")
    for z, _ in g.calls:
        assert tuple(z.shape) == (3, g.dim_z), "z must have shape (B, g.dim_z)"


@pytest.mark.parametrize("norm", [3.0, 0.25])
def test_wasserstein_gp_value_with_a_linear_critic(norm):
    g, d = FixedG(FAKE), LinearCritic(norm)
    x_real = images(REAL)
    d_loss, g_loss = call("loss_wasserstein_gp", g, d, x_real)
    critic_fake, critic_real = (d.w * g.x).sum().item() / 3, (d.w * x_real).sum().item() / 3
    assert d_loss.item() == pytest.approx(critic_fake - critic_real + 10 * (norm - 1) ** 2, rel=1e-6)
    assert g_loss.item() == pytest.approx(-critic_fake, rel=1e-6)


@pytest.mark.parametrize("norm", [3.0, 0.25])
def test_gradient_penalty_reaches_the_critics_parameters(norm):
    # Training steps D on d_loss's gradient w.r.t. D's parameters, so the penalty must be part of that gradient:
    # d/dw [E[D(G(z))] - E[D(x)]] = mean fake - mean real, and d/dw 10 (||w|| - 1)^2 = 20 (||w|| - 1) w / ||w||.
    g, d = FixedG(FAKE), LinearCritic(norm)
    x_real = images(REAL)
    d_loss, _ = call("loss_wasserstein_gp", g, d, x_real)
    (grad,) = torch.autograd.grad(d_loss, [d.w], allow_unused=True)
    wasserstein = g.x.mean(0) - x_real.mean(0)
    assert grad is not None, "d_loss sends no gradient to D's parameters"
    assert not torch.allclose(grad, wasserstein), ("the gradient penalty sends no gradient to D's parameters: "
                                                   "d_loss's gradient w.r.t. D's weights lacks the penalty's term")
    torch.testing.assert_close(grad, wasserstein + 20 * (norm - 1) * d.w.detach() / norm,
                               msg=lambda m: "d_loss's gradient w.r.t. D's weights is wrong\n" + m)


def test_gradient_penalty_norm_is_per_sample_over_all_pixels():
    # D(x) = ||x||^2 / 2 has gradient x. With x_real == x_fake every interpolate is x, whatever alpha is,
    # so the penalty is the mean over samples of (||x_i|| - 1)^2, each norm over all 784 pixels of sample i.
    class HalfSquare(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Parameter(torch.ones((), dtype=torch.float64))

        def forward(self, x, y=None):
            return self.c * x.square().flatten(1).sum(1) / 2

    scales = [0.01, 0.03, 0.05, 0.1]
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = x * torch.tensor(scales, dtype=torch.float64).view(4, 1, 1, 1)
    g = FixedG([0.0] * 4)
    g.x = x
    d_loss, _ = call("loss_wasserstein_gp", g, HalfSquare(), x)
    norms = [math.sqrt(sum(v * v for v in xi.flatten().tolist())) for xi in x]
    assert d_loss.item() == pytest.approx(10 * sum((n - 1) ** 2 for n in norms) / 4, rel=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_runs_with_the_real_networks(name):
    from codebase.network import Discriminator, Generator

    torch.manual_seed(0)
    conditional = name.startswith("conditional")
    g, d = Generator(dim_z=16, num_classes=10 if conditional else 0), Discriminator(num_classes=10 if conditional else 0)
    x_real = torch.rand(4, 1, 28, 28) * 2 - 1
    d_loss, g_loss = call(name, g, d, x_real, torch.tensor([0, 3, 9, 3]) if conditional else None)
    assert d_loss.dim() == g_loss.dim() == 0 and torch.isfinite(d_loss) and torch.isfinite(g_loss)
    assert any(p.grad is None for p in d.parameters())  # the function computes losses; the training loop steps
