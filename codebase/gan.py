"""GAN losses of the handout, on discriminator logits.

Two layers, one implementation:

* Per-network losses used by the training loop, e.g. ``nonsaturating_d_loss(d, x_real, x_fake, y)`` and
  ``nonsaturating_g_loss(d, x_fake, y)``. The loop draws ``x_fake = g(z)`` once, steps D on the D loss (with
  ``x_fake.detach()``), then steps G on the G loss evaluated with the *updated* D.
* The handout's functions ``loss_nonsaturating(g, d, x_real, *, device)`` and friends, which draw z, run G once
  and return ``(d_loss, g_loss)`` from the same per-network losses.

``d`` always returns logits h(x) of shape (B,), with D(x) = sigmoid(h(x)). Everything is written with
``F.softplus`` so that losses and gradients stay finite for logits of +-1e4:
    -log sigmoid(h) = softplus(-h),    -log(1 - sigmoid(h)) = softplus(h).
Conditional networks take integer labels: ``d(x, y)`` and ``g(z, y)`` with y of shape (B,).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GP_LAMBDA = 10.0  # handout 4.5


def _logits(d: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
    """h(x) or h(x, y), shape (B,)."""
    return d(x) if y is None else d(x, y)


def sample_z(batch_size: int, dim_z: int, device: torch.device | str) -> Tensor:
    """z ~ N(0, I), shape (B, dim_z)."""
    return torch.randn(batch_size, dim_z, device=device)


# ---- Per-network losses (used by the training loop) ----------------------------------------------------------


def nonsaturating_d_loss(d: nn.Module, x_real: Tensor, x_fake: Tensor, y: Tensor | None = None) -> Tensor:
    """L_D = -E[log D(x_real)] - E[log(1 - D(x_fake))] (handout 1.2). Returns a scalar."""
    # BEGIN SOLUTION: average both terms over the batch, from logits with F.softplus; never log(sigmoid(h))
    # softplus(-h_real) = -log sigmoid(h_real);  softplus(h_fake) = -log(1 - sigmoid(h_fake))
    return F.softplus(-_logits(d, x_real, y)).mean() + F.softplus(_logits(d, x_fake, y)).mean()
    # END SOLUTION


def nonsaturating_g_loss(d: nn.Module, x_fake: Tensor, y: Tensor | None = None) -> Tensor:
    """L_G = -E[log D(G(z))] (handout 1.2, non-saturating). Returns a scalar."""
    # BEGIN SOLUTION: average -log sigmoid(h_fake) over the batch, written with F.softplus or F.logsigmoid
    return F.softplus(-_logits(d, x_fake, y)).mean()  # -log sigmoid(h_fake)
    # END SOLUTION


def minimax_g_loss(d: nn.Module, x_fake: Tensor, y: Tensor | None = None) -> Tensor:
    """L_G = E[log(1 - D(G(z)))] (handout 1.1, saturating). Returns a scalar.

    Its gradient vanishes when D confidently rejects the fakes (h_fake -> -inf), which is why 1.2 replaces it.
    """
    # BEGIN SOLUTION: average log(1 - sigmoid(h_fake)) over the batch, written with F.softplus or F.logsigmoid
    return -F.softplus(_logits(d, x_fake, y)).mean()  # log(1 - sigmoid(h_fake))
    # END SOLUTION


def gradient_penalty(d: nn.Module, x_real: Tensor, x_fake: Tensor, y: Tensor | None = None) -> Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] with x_hat = a x_real + (1 - a) x_fake, a ~ U[0, 1] per sample.

    The norm runs over all pixels of each sample. ``create_graph=True`` lets the penalty's gradient reach D's
    parameters. Returns a scalar.
    """
    # BEGIN SOLUTION: one alpha per sample; torch.autograd.grad(..., create_graph=True); a norm per sample
    alpha = torch.rand(x_real.shape[0], *[1] * (x_real.dim() - 1), dtype=x_real.dtype, device=x_real.device)  # (B,1,1,1)
    x_hat = (alpha * x_real + (1 - alpha) * x_fake).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(_logits(d, x_hat, y).sum(), x_hat, create_graph=True)  # (B, C, H, W)
    return (grad.reshape(len(grad), -1).norm(dim=1) - 1).square().mean()
    # END SOLUTION


def wasserstein_gp_d_loss(d: nn.Module, x_real: Tensor, x_fake: Tensor, y: Tensor | None = None) -> Tensor:
    """L_D = E[D(x_fake)] - E[D(x_real)] + lambda * gradient penalty, lambda = 10 (handout 4.5)."""
    # BEGIN SOLUTION: the two critic means plus GP_LAMBDA * gradient_penalty(d, x_real, x_fake, y)
    h_real, h_fake = _logits(d, x_real, y), _logits(d, x_fake, y)
    return h_fake.mean() - h_real.mean() + GP_LAMBDA * gradient_penalty(d, x_real, x_fake, y)
    # END SOLUTION


def wasserstein_g_loss(d: nn.Module, x_fake: Tensor, y: Tensor | None = None) -> Tensor:
    """L_G = -E[D(G(z))] (handout 4.5). Returns a scalar."""
    # BEGIN SOLUTION: minus the mean critic output on the fakes
    return -_logits(d, x_fake, y).mean()
    # END SOLUTION


class GANLoss(NamedTuple):
    """A D loss and the G loss that goes with it."""

    d_loss: Callable[..., Tensor]
    g_loss: Callable[..., Tensor]


LOSSES: dict[str, GANLoss] = {
    "nonsaturating": GANLoss(nonsaturating_d_loss, nonsaturating_g_loss),
    "minimax": GANLoss(nonsaturating_d_loss, minimax_g_loss),
    "wasserstein_gp": GANLoss(wasserstein_gp_d_loss, wasserstein_g_loss),
}


# ---- The handout's functions -----------------------------------------------------------------------------------


def _both_losses(loss: GANLoss, g: nn.Module, d: nn.Module, x_real: Tensor, y: Tensor | None,
                 device: torch.device | str) -> tuple[Tensor, Tensor]:
    z = sample_z(x_real.shape[0], g.dim_z, device)
    x_fake = g(z) if y is None else g(z, y)  # one G forward pass serves both losses
    return loss.d_loss(d, x_real, x_fake.detach(), y), loss.g_loss(d, x_fake, y)


def loss_nonsaturating(g: nn.Module, d: nn.Module, x_real: Tensor, *, device) -> tuple[Tensor, Tensor]:
    """Handout 1.2. x_real: (B, 1, 28, 28) in [-1, 1]. Returns (d_loss, g_loss), both scalars."""
    return _both_losses(LOSSES["nonsaturating"], g, d, x_real, None, device)


def loss_minimax(g: nn.Module, d: nn.Module, x_real: Tensor, *, device) -> tuple[Tensor, Tensor]:
    """Handout 1.1: the saturating G loss E[log(1 - D(G(z)))]. Returns (d_loss, g_loss)."""
    return _both_losses(LOSSES["minimax"], g, d, x_real, None, device)


def conditional_loss_nonsaturating(g: nn.Module, d: nn.Module, x_real: Tensor, y_real: Tensor, *,
                                   device) -> tuple[Tensor, Tensor]:
    """Handout 3.2. y_real: integer labels (B,), also used as the labels of the fakes. Returns (d_loss, g_loss)."""
    return _both_losses(LOSSES["nonsaturating"], g, d, x_real, y_real, device)


def loss_wasserstein_gp(g: nn.Module, d: nn.Module, x_real: Tensor, *, device) -> tuple[Tensor, Tensor]:
    """Handout 4.5: WGAN-GP with lambda = 10. Returns (d_loss, g_loss)."""
    return _both_losses(LOSSES["wasserstein_gp"], g, d, x_real, None, device)
