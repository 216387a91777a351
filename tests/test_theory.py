"""Numerical checks of the handout's written problems; docs/theory.md has the derivations.

Each test names its handout part and compares against a value computed another way: a closed form, an exact sum
over a discrete distribution, Monte Carlo or a grid integral. Discrete expectations are exact: a distribution
with probabilities count_k / N is represented by N "samples" holding k count_k times, so a loss's batch mean is
the expectation itself.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Normal, kl_divergence
from torch.testing import assert_close

from codebase.gan import (
    GP_LAMBDA,
    minimax_g_loss,
    nonsaturating_d_loss,
    nonsaturating_g_loss,
    wasserstein_g_loss,
    wasserstein_gp_d_loss,
)
from codebase.nce import EnergyModel, fit_gaussian, fit_nce, grid, log_normaliser, nce_loss, ring_of_gaussians

f64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny tensors run fastest on one thread


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from seed 0."""
    torch.manual_seed(0)


def _samples(counts: list[int]) -> Tensor:
    """The exact 'sample' of the distribution count_k / sum(counts): index k repeated count_k times. (N,)"""
    return torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))


def _probs(counts: list[int]) -> Tensor:
    return torch.tensor(counts, dtype=f64) / sum(counts)


def _minimise(params: list[Tensor], loss_fn, max_iter: int = 500) -> None:
    """Full-batch L-BFGS to (near) machine precision."""
    opt = torch.optim.LBFGS(params, lr=1, max_iter=max_iter, tolerance_grad=1e-12, tolerance_change=1e-15,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)


# Two distributions on 6 points, all probabilities positive (so the optimal logits are finite).
COUNTS_DATA = [1, 2, 3, 5, 4, 5]  # p_data, N = 20
COUNTS_MODEL = [6, 5, 4, 2, 2, 1]  # p_theta, N = 20


def _optimal_table_discriminator() -> Tensor:
    """Fit a free logit h_k per point by minimising the D loss exactly; returns h (6,)."""
    h = torch.zeros(6, dtype=f64, requires_grad=True)
    x_real, x_fake = _samples(COUNTS_DATA), _samples(COUNTS_MODEL)
    _minimise([h], lambda: nonsaturating_d_loss(lambda x: h[x], x_real, x_fake))
    return h.detach()


# ---- 1.1 --------------------------------------------------------------------------------------------------------


def test_1_1_logit_gradients_match_closed_form():
    # Handout 1.1: per fake, dL_G/dh = -sigmoid(h) / B (minimax) and -sigmoid(-h) / B (non-saturating).
    h = torch.linspace(-40, 6, 47, dtype=f64, requires_grad=True)
    (grad_mm,) = torch.autograd.grad(minimax_g_loss(lambda x: x, h), h)  # d is the identity: its input is h
    (grad_ns,) = torch.autograd.grad(nonsaturating_g_loss(lambda x: x, h), h)
    sigmoid = torch.tensor([1 / (1 + math.exp(-v)) for v in h.tolist()], dtype=f64)
    # rtol 1e-8: F.softplus is exactly linear above 20, off by sigmoid(-20) = 2e-9 there
    assert_close(grad_mm, -sigmoid / h.numel(), rtol=1e-8, atol=0)
    assert_close(grad_ns, -(1 - sigmoid) / h.numel(), rtol=1e-8, atol=0)


def test_1_1_minimax_generator_gradient_vanishes_when_fakes_are_rejected():
    # Handout 1.1: dL_G/dtheta = -E[sigmoid(h) dh/dtheta] -> 0 as h -> -inf; the non-saturating one does not vanish.
    g = nn.Linear(3, 2).double()  # x_fake = G(z), (B, 2)
    z = torch.randn(64, 3, dtype=f64)
    w = torch.tensor([0.7, -1.3], dtype=f64)
    norms = {"minimax": [], "nonsaturating": []}
    offsets = [0.0, -5.0, -10.0, -20.0, -40.0]  # shift the logits of all fakes further towards "fake"
    for c in offsets:
        d = lambda x, c=c: x @ w + c  # (B,) logits
        h = d(g(z)).detach()
        # h_i = w^T (W z_i + beta) + c, so dh_i/dW = w z_i^T and dh_i/dbeta = w
        jac = torch.cat([(w[:, None] * z[:, None, :]).flatten(1), w.expand(len(z), 2)], dim=1)  # (B, 8)
        for name, loss_fn, weight in [("minimax", minimax_g_loss, torch.sigmoid(h)),
                                      ("nonsaturating", nonsaturating_g_loss, torch.sigmoid(-h))]:
            grads = torch.autograd.grad(loss_fn(d, g(z)), [g.weight, g.bias])
            grad = torch.cat([gr.flatten() for gr in grads])
            assert_close(grad, -(weight[:, None] * jac).mean(0), rtol=1e-8, atol=0)  # the chain rule of 1.1
            norms[name].append(grad.norm().item())
    mm, ns = norms["minimax"], norms["nonsaturating"]
    # Once every logit is below about -5, sigmoid(h) ~ e^h: shifting all logits by -k divides the norm by e^k.
    assert_close([a / b for a, b in zip(mm[1:], mm[2:])], [math.exp(a - b) for a, b in zip(offsets[1:], offsets[2:])],
                 rtol=0.03, atol=0)
    assert mm[-1] < 1e-15 * ns[-1]
    assert ns[-1] > ns[0]  # the non-saturating gradient grows to E[|dh/dtheta|]-size as D gets more confident


# ---- 2.1 to 2.4 -----------------------------------------------------------------------------------------------


def test_2_1_fitted_discriminator_is_optimal_discriminator():
    # Handout 2.1: the minimiser of L_D is D*(x) = p_data / (p_data + p_theta), and L_D(D*) = log 4 - 2 JSD.
    p_data, p_theta = _probs(COUNTS_DATA), _probs(COUNTS_MODEL)
    h = _optimal_table_discriminator()
    assert_close(torch.sigmoid(h), p_data / (p_data + p_theta), rtol=0, atol=1e-7)
    mix = (p_data + p_theta) / 2
    jsd = 0.5 * (p_data * (p_data / mix).log()).sum() + 0.5 * (p_theta * (p_theta / mix).log()).sum()
    loss = nonsaturating_d_loss(lambda x: h[x], _samples(COUNTS_DATA), _samples(COUNTS_MODEL))
    assert_close(loss, math.log(4) - 2 * jsd, rtol=0, atol=1e-10)


def test_2_2_optimal_logit_is_log_likelihood_ratio():
    # Handout 2.2: h*(x) = log p_data(x) - log p_theta(x).
    h = _optimal_table_discriminator()
    log_ratio = torch.tensor([math.log(a / b) for a, b in zip(COUNTS_DATA, COUNTS_MODEL)], dtype=f64)
    assert_close(h, log_ratio, rtol=0, atol=1e-6)


def test_2_3_generator_loss_at_optimal_discriminator_is_reverse_kl():
    # Handout 2.3: E_{p_theta}[-log(D*/(1 - D*))] = E_{p_theta}[-h*] = KL(p_theta || p_data).
    h = _optimal_table_discriminator()
    d = lambda x: h[x]
    x_fake = _samples(COUNTS_MODEL)
    # -log(D / (1 - D)) = -log D + log(1 - D): the non-saturating plus the minimax generator loss.
    g_loss = nonsaturating_g_loss(d, x_fake) + minimax_g_loss(d, x_fake)
    kl = kl_divergence(Categorical(probs=_probs(COUNTS_MODEL)), Categorical(probs=_probs(COUNTS_DATA)))
    assert_close(g_loss, kl, rtol=0, atol=1e-6)
    assert kl > 0.1  # the two distributions differ, so the check is not 0 == 0


def test_2_4_nll_is_forward_kl_plus_data_entropy():
    # Handout 2.4: E_{p_data}[-log p_theta] = KL(p_data || p_theta) + H(p_data); H does not depend on theta.
    logits = torch.randn(6, dtype=f64, requires_grad=True)  # p_theta = softmax(logits)
    x_real = _samples(COUNTS_DATA)
    nll = F.cross_entropy(logits.expand(len(x_real), 6), x_real)  # mean of -log p_theta(x) over the data
    p_data = Categorical(probs=_probs(COUNTS_DATA))
    kl = kl_divergence(p_data, Categorical(logits=logits))
    assert_close(nll, kl + p_data.entropy(), rtol=0, atol=1e-12)
    # Hence the two objectives have the same gradient: maximum likelihood minimises KL(p_data || p_theta).
    assert_close(torch.autograd.grad(nll, logits)[0], torch.autograd.grad(kl, logits)[0], rtol=0, atol=1e-12)


# ---- 3.1 --------------------------------------------------------------------------------------------------------


class _Projection(nn.Module):
    """h(x, y) = y^T (A phi(x) + b) for one-hot y, with a fixed feature map phi. x (B, 2), y (B,) -> (B,)."""

    def __init__(self, phi, dim_phi: int, num_classes: int):
        super().__init__()
        self.phi = phi
        self.linear = nn.Linear(dim_phi, num_classes).double()  # weight = A (K, dim_phi), bias = b (K,)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.linear(self.phi(x)).gather(1, y[:, None]).squeeze(1)


def test_3_1_optimal_conditional_discriminator_is_a_projection():
    # Handout 3.1: with p_data(x|y) = N(mu_y, I) and p_theta(x|y) = N(mu_hat_y, I), the optimal logit is
    # y^T (A x + b) with A_y = mu_y - mu_hat_y and b_y = (|mu_hat_y|^2 - |mu_y|^2) / 2. We fit a richer,
    # quadratic-in-x logit per class and check that the quadratic part vanishes and A, b match the closed form.
    mu = torch.tensor([[1.0, 0.0], [-0.5, 0.8], [0.0, -1.0]], dtype=f64)  # (K, 2)
    mu_hat = torch.tensor([[0.2, 0.5], [0.3, 0.0], [-0.6, -0.4]], dtype=f64)
    n = 40_000  # per class and per distribution
    y = torch.arange(3).repeat_interleave(n)  # uniform p(y); the fakes share the labels of the reals
    x_real = mu[y] + torch.randn(3 * n, 2, dtype=f64)
    x_fake = mu_hat[y] + torch.randn(3 * n, 2, dtype=f64)
    quadratic = lambda x: torch.cat([x, x.square(), x[:, :1] * x[:, 1:]], dim=1)  # (B, 5): x1, x2, x1^2, x2^2, x1 x2
    d = _Projection(quadratic, 5, 3)
    _minimise(list(d.parameters()), lambda: nonsaturating_d_loss(d, x_real, x_fake, y), max_iter=200)
    A, b = d.linear.weight.detach(), d.linear.bias.detach()
    tol = dict(rtol=0, atol=0.05)  # the sampling error at n = 40 000 is about 0.01 per entry
    assert_close(A[:, 2:], torch.zeros(3, 3, dtype=f64), **tol)
    assert_close(A[:, :2], mu - mu_hat, **tol)
    assert_close(b, (mu_hat.square().sum(1) - mu.square().sum(1)) / 2, **tol)


# ---- 4.1 to 4.4 -------------------------------------------------------------------------------------------------


def _kl_same_variance(theta: float, theta_0: float, eps: float) -> float:
    """Closed form of 4.1: KL(N(theta, eps^2) || N(theta_0, eps^2)) = (theta - theta_0)^2 / (2 eps^2)."""
    return (theta - theta_0) ** 2 / (2 * eps**2)


@pytest.mark.parametrize("theta, theta_0, eps", [(1.0, 0.0, 1.0), (0.3, -0.2, 0.5), (2.0, 1.0, 0.4), (-1.0, 0.5, 3.0)])
def test_4_1_gaussian_kl_closed_form_matches_monte_carlo(theta, theta_0, eps):
    # Handout 4.1: KL(p_theta || p_data) = E_{p_theta}[log p_theta - log p_data], estimated with 10^6 samples.
    n = 1_000_000
    p_theta, p_data = Normal(torch.tensor(theta, dtype=f64), eps), Normal(torch.tensor(theta_0, dtype=f64), eps)
    x = p_theta.sample((n,))
    log_ratio = p_theta.log_prob(x) - p_data.log_prob(x)
    # log_ratio = KL + (theta - theta_0) u / eps with u ~ N(0, 1), so the estimate's std is |theta - theta_0| / eps / sqrt(n)
    std_error = abs(theta - theta_0) / eps / math.sqrt(n)
    assert_close(log_ratio.mean().item(), _kl_same_variance(theta, theta_0, eps), rtol=0, atol=5 * std_error)


def test_4_2_kl_and_its_gradient_blow_up_as_eps_goes_to_zero():
    # Handout 4.2: KL = (theta - theta_0)^2 / (2 eps^2) and dKL/dtheta = (theta - theta_0) / eps^2 grow without bound.
    theta_0, epss = 0.0, [1.0, 1e-1, 1e-2, 1e-3]
    kls, grads = [], []
    for eps in epss:
        theta = torch.tensor(0.5, dtype=f64, requires_grad=True)
        scale = torch.tensor(eps, dtype=f64)
        kl = kl_divergence(Normal(theta, scale), Normal(theta_0, scale))  # torch's own Gaussian KL
        (grad,) = torch.autograd.grad(kl, theta)
        kls.append(kl.item())
        grads.append(grad.item())
    assert_close(kls, [_kl_same_variance(0.5, theta_0, e) for e in epss], rtol=1e-12, atol=0)
    assert_close(grads, [(0.5 - theta_0) / e**2 for e in epss], rtol=1e-12, atol=0)
    # Every tenfold smaller eps multiplies both by 100: no bound.
    assert_close([b / a for a, b in zip(grads, grads[1:])], [100.0] * 3, rtol=1e-9, atol=0)
    assert grads[-1] > 1e5


def test_4_3_unconstrained_critic_loss_has_no_minimum():
    # Handout 4.3: L_D(D) = E_{p_theta}[D] - E_{p_data}[D]. The critics D_t(x) = t x drive it to -inf.
    theta, theta_0, eps = -1.0, 1.0, 0.1
    x_fake = theta + eps * torch.randn(4096, 1, dtype=f64)  # (B, 1)
    x_real = theta_0 + eps * torch.randn(4096, 1, dtype=f64)
    gap = (x_real.mean() - x_fake.mean()).item()  # about theta_0 - theta = 2
    scales = [1.0, 10.0, 100.0, 1e4]
    losses = []
    for t in scales:
        d = lambda x, t=t: t * x.squeeze(1)  # (B,)
        # E_{p_theta}[D] - E_{p_data}[D] written with the project's generator loss -E[D(x)]
        loss = wasserstein_g_loss(d, x_real) - wasserstein_g_loss(d, x_fake)
        losses.append(loss.item())
        assert_close(loss.item(), -t * gap, rtol=1e-12, atol=1e-9)
        # The gradient penalty restores a minimum: for a line of slope t it adds lambda (t - 1)^2 at every x_hat.
        penalised = wasserstein_gp_d_loss(d, x_real, x_fake).item()
        assert_close(penalised, -t * gap + GP_LAMBDA * (t - 1) ** 2, rtol=1e-9, atol=1e-9)
    assert all(a > b for a, b in zip(losses, losses[1:]))
    assert losses[-1] < -1e4


class _Critic(nn.Module):
    """A small MLP critic on the line, starting as the zero function: x (B, 1) -> (B,).

    On a line the penalty (|D'| - 1)^2 is zero at both D' = +1 and D' = -1, so a random start of the wrong sign
    can settle at the worse slope -1 + ...; from D = 0 the first steps follow the loss, which picks the sign.
    """

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)


@pytest.mark.parametrize("theta, theta_0", [(0.0, 1.0), (0.5, -0.5)])
def test_4_4_gradient_penalty_critic_has_unit_slope_between_point_masses(theta, theta_0):
    # Handout 4.4: for point masses at theta (fake) and theta_0 (real) the best 1-Lipschitz critic is a line of
    # slope sign(theta_0 - theta) between them, L_D = -|theta - theta_0| and |dL_G/dtheta| = 1, whatever eps.
    # The soft penalty of WGAN-GP trades slope against the loss: the minimiser of
    # -|theta_0 - theta| s + lambda (s - 1)^2 is s = 1 + |theta_0 - theta| / (2 lambda) = 1.05 here.
    d = _Critic()
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)
    x_fake, x_real = torch.full((256, 1), theta), torch.full((256, 1), theta_0)  # (B, 1), the eps -> 0 limit
    for _ in range(400):
        loss = wasserstein_gp_d_loss(d, x_real, x_fake)
        opt.zero_grad()
        loss.backward()
        opt.step()
    distance, sign = abs(theta_0 - theta), math.copysign(1.0, theta_0 - theta)
    slope = 1 + distance / (2 * GP_LAMBDA)

    between = torch.linspace(theta, theta_0, 11)[1:-1, None].requires_grad_(True)  # (9, 1)
    (dd_dx,) = torch.autograd.grad(d(between).sum(), between)
    assert_close(dd_dx.squeeze(1), torch.full((9,), sign * slope), rtol=0, atol=0.03)
    with torch.no_grad():
        critic_loss = (d(x_fake) - d(x_real)).mean().item()  # L_D without the penalty
    assert_close(critic_loss, -distance * slope, rtol=0, atol=0.03)
    # The generator's gradient through this critic stays of size 1 (compare with 4.2's (theta - theta_0) / eps^2).
    theta_param = torch.tensor([[theta]], requires_grad=True)
    (grad_g,) = torch.autograd.grad(wasserstein_g_loss(d, theta_param), theta_param)
    assert_close(grad_g.item(), -sign * slope, rtol=0, atol=0.05)


# ---- 5.1 --------------------------------------------------------------------------------------------------------


class _QuadraticEnergy(nn.Module):
    """E(x) = a x^2 + b x on the line, with a learned log_z: a well-specified model of a Gaussian. x (B,) -> (B,)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Parameter(torch.tensor(1.0, dtype=f64)), nn.Parameter(torch.tensor(0.0, dtype=f64))
        self.log_z = nn.Parameter(torch.tensor(0.0, dtype=f64))

    def log_prob(self, x: Tensor) -> Tensor:
        return -(self.a * x.square() + self.b * x) - self.log_z


def test_5_1_nce_recovers_a_gaussian_and_its_normaliser():
    # Handout 5.1: the NCE optimum has p_model = p_data, so with a well-specified family the learned energy is the
    # data's and log_z = log of the integral of exp(-a x^2 - b x) = log sqrt(pi / a) + b^2 / (4 a).
    m, s = 1.0, 0.7  # p_data = N(m, s^2), so a = 1 / (2 s^2), b = -m / s^2, log Z = log(s sqrt(2 pi)) + m^2 / (2 s^2)
    noise = Normal(torch.tensor(0.0, dtype=f64), 2.0)
    x_data = m + s * torch.randn(100_000, dtype=f64)
    x_noise = noise.sample((100_000,))
    model = _QuadraticEnergy()
    _minimise(list(model.parameters()), lambda: nce_loss(model.log_prob, noise, x_data, x_noise), max_iter=200)
    tol = dict(rtol=0, atol=0.03)
    assert_close(model.a.item(), 1 / (2 * s**2), **tol)
    assert_close(model.b.item(), -m / s**2, **tol)
    assert_close(model.log_z.item(), math.log(s * math.sqrt(2 * math.pi)) + m**2 / (2 * s**2), **tol)
    a, b = model.a.item(), model.b.item()
    assert_close(model.log_z.item(), 0.5 * math.log(math.pi / a) + b**2 / (4 * a), **tol)


def test_5_1_nce_learns_log_normaliser():
    # Handout 5.1 as running code (codebase/nce.py): an MLP energy with a learned log Z on a ring of Gaussians.
    # The learned log Z must match the grid integral of exp(-E) within 0.1, and the density must match the data.
    data = ring_of_gaussians()
    noise = fit_gaussian(data.sample((10_000,)))
    model = EnergyModel()
    fit_nce(model, data, noise, steps=1500, batch_size=256, lr=1e-2)
    log_z_true = log_normaliser(model.energy)
    assert abs(model.log_z.item() - log_z_true) < 0.1
    points, area = grid(6.0, 240)
    with torch.no_grad():
        p_data = data.log_prob(points.float()).exp().double()
        p_model = model.log_prob(points.float()).exp().double()  # normalised by the learned log Z
    total_variation = 0.5 * (p_data - p_model).abs().sum().item() * area
    assert total_variation < 0.25  # about 0.1 to 0.18 across seeds; a wrong loss or log Z gives 0.5 or more
