"""Noise-contrastive estimation (handout 5) on a 2-D toy density.

NCE fits an energy model p_model(x) = exp(-E(x) - log_z), with log_z a free parameter rather than an integral, by
logistic regression: tell samples of the data from samples of a known noise density q. The classifier's logit is

    h(x) = log p_model(x) - log q(x),

so the NCE loss is the GAN discriminator loss of handout 2.1 with q in the generator's place and this logit in
place of a free discriminator. By handout 2.2 the best logit is log p_data - log q, so at the optimum
p_model = p_data and log_z = log of the integral of exp(-E), the true log-normaliser (docs/theory.md, part 5.1).

Run ``python -m theory.nce_demo``; the test is ``tests/test_theory.py::test_5_1_nce_learns_log_normaliser``.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, MultivariateNormal, Normal


# ---- Densities ----------------------------------------------------------------------------------------------------


def ring_of_gaussians(num_modes: int = 8, radius: float = 2.0, std: float = 0.4) -> Distribution:
    """The data: an equal mixture of isotropic 2-D Gaussians whose means sit evenly on a circle.

    ``sample((B,))`` gives (B, 2) and ``log_prob(x)`` of x (B, 2) gives (B,).
    """
    angle = torch.arange(num_modes) * (2 * math.pi / num_modes)
    means = radius * torch.stack([angle.cos(), angle.sin()], dim=1)  # (K, 2)
    components = Independent(Normal(means, torch.full_like(means, std)), 1)
    return MixtureSameFamily(Categorical(torch.ones(num_modes)), components)


def fit_gaussian(x: Tensor) -> MultivariateNormal:
    """The noise q: the Gaussian with the mean and covariance of x (B, D), so that it covers the data."""
    return MultivariateNormal(x.mean(0), covariance_matrix=torch.cov(x.T))


# ---- Model --------------------------------------------------------------------------------------------------------


class EnergyModel(nn.Module):
    """log p_model(x) = -E(x) - log_z, with E an MLP plus a fixed wide quadratic and log_z a learned scalar.

    The quadratic ||x||^2 / (2 * confine^2) keeps exp(-E) integrable over the whole plane (an MLP alone can
    flatten or even fall far from the data, where neither data nor noise constrain it), so the true
    log-normaliser is finite. The MLP is free to cancel the quadratic where the data are.
    """

    def __init__(self, dim: int = 2, hidden: int = 64, confine: float = 3.0):
        super().__init__()
        self.confine = confine
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, 1),
        )
        self.log_z = nn.Parameter(torch.zeros(()))  # learned, never integrated during training

    def energy(self, x: Tensor) -> Tensor:
        """E(x) for x (B, D). Returns (B,)."""
        return self.net(x).squeeze(1) + x.square().sum(1) / (2 * self.confine**2)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p_model(x) = -E(x) - log_z for x (B, D). Returns (B,)."""
        return -self.energy(x) - self.log_z


# ---- NCE ----------------------------------------------------------------------------------------------------------


def nce_logit(log_prob: Callable[[Tensor], Tensor], noise: Distribution, x: Tensor) -> Tensor:
    """h(x) = log p_model(x) - log q(x): the logit of 'x is data, not noise'. x (B, D) -> (B,)."""
    return log_prob(x) - noise.log_prob(x)


def nce_loss(log_prob: Callable[[Tensor], Tensor], noise: Distribution, x_data: Tensor, x_noise: Tensor) -> Tensor:
    """NCE loss: -E_data[log sigma(h)] - E_q[log(1 - sigma(h))], the two classes weighted equally.

    Each expectation is a batch mean, so the batches may differ in size; the logit log p_model - log q is the
    right one for equal weights (one noise sample per data sample in expectation).

    Args:
        log_prob: the model's log-density with its learned normaliser, x (B, D) -> (B,).
        noise: the noise distribution q, with ``log_prob``.
        x_data: (B, D) samples of the data. x_noise: (M, D) samples of q.
    Returns:
        A scalar.
    """
    # The GAN discriminator loss of handout 2.1, with the logit fixed to log p_model - log q.
    h_data = nce_logit(log_prob, noise, x_data)  # (B,)
    h_noise = nce_logit(log_prob, noise, x_noise)  # (M,)
    return F.softplus(-h_data).mean() + F.softplus(h_noise).mean()  # -log sigma(h) - log(1 - sigma(h))


def fit_nce(model: EnergyModel, data: Distribution, noise: Distribution, *, steps: int = 2000,
            batch_size: int = 512, lr: float = 3e-3) -> list[float]:
    """Train ``model`` by NCE with fresh data and noise batches every step. Returns the loss per step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)  # a small final step size steadies log_z
    losses = []
    for _ in range(steps):
        x_data, x_noise = data.sample((batch_size,)), noise.sample((batch_size,))  # (B, 2) each
        loss = nce_loss(model.log_prob, noise, x_data, x_noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


# ---- Numerical integration ----------------------------------------------------------------------------------------


def grid(lim: float, n: int) -> tuple[Tensor, float]:
    """An n x n grid of cell centres on [-lim, lim]^2, as points (n * n, 2), and the area of one cell."""
    step = 2 * lim / n
    ticks = -lim + step * (torch.arange(n, dtype=torch.float64) + 0.5)  # (n,)
    xx, yy = torch.meshgrid(ticks, ticks, indexing="xy")  # (n, n) each, rows run along y
    return torch.stack([xx.flatten(), yy.flatten()], dim=1), step**2


@torch.no_grad()
def log_normaliser(energy: Callable[[Tensor], Tensor], lim: float = 8.0, n: int = 400) -> float:
    """log of the integral of exp(-E(x)) over [-lim, lim]^2, by the midpoint rule on an n x n grid."""
    points, area = grid(lim, n)
    neg_energy = -energy(points.to(torch.get_default_dtype())).double()  # (n * n,)
    return (torch.logsumexp(neg_energy, 0) + math.log(area)).item()
