"""GAN losses of the handout: the functions students write in this file.

Each function takes the generator ``g``, the discriminator ``d`` and a batch of real images, draws what it needs
(noise z, and for WGAN-GP one alpha per sample), and returns ``(d_loss, g_loss)``: two scalar tensors. It is
pure math: no optimizer, no ``.backward()``, no ``.item()``. The training loop (``codebase/train.py``) takes
d_loss's gradient w.r.t. D's parameters only and g_loss's w.r.t. G's parameters only, so whether x_fake is
detached inside d_loss does not matter to it.

* ``g(z)`` maps z (B, g.dim_z) to images (B, 1, 28, 28) in [-1, 1]; conditionally ``g(z, y)`` with y (B,) labels.
* ``d(x)`` returns *logits* h(x) of shape (B,), with D(x) = sigmoid(h(x)); conditionally ``d(x, y)``.

The losses must stay finite for logits of +-1e4 (the grader checks it), where sigmoid(h) rounds to 0 or 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GP_LAMBDA = 10.0  # handout 4.5


def loss_nonsaturating(g: nn.Module, d: nn.Module, x_real: Tensor, *, device: torch.device | str
                       ) -> tuple[Tensor, Tensor]:
    """Handout 1.2: the non-saturating GAN.

    L_D = -E_x[log D(x)] - E_z[log(1 - D(G(z)))],    L_G = -E_z[log D(G(z))]

    Args:
        g: generator, ``g(z)`` with z (B, g.dim_z) -> images (B, 1, 28, 28).
        d: discriminator, ``d(x)`` -> logits (B,) (not probabilities).
        x_real: real images (B, 1, 28, 28) in [-1, 1].
        device: where to create new tensors such as z.
    Returns:
        (d_loss, g_loss): two scalar tensors, each averaged over the batch.
    """
    # BEGIN SOLUTION: draw z ~ N(0, I) of shape (B, g.dim_z) and average each term over the batch, from the logits with F.softplus or F.logsigmoid (never log(sigmoid(h)), which is -inf for large |h|)
    # HANDOUT: L_D = -E_x[log D(x)] - E_z[log(1 - D(G(z)))] and L_G = -E_z[log D(G(z))], with z ~ N(0, I) of shape (B, g.dim_z) and D(x) = sigmoid(d(x)); return (d_loss, g_loss), two scalars
    z = torch.randn(x_real.shape[0], g.dim_z, device=device)  # (B, dim_z)
    x_fake = g(z)  # (B, 1, 28, 28)
    d_loss = F.softplus(-d(x_real)).mean() + F.softplus(d(x_fake.detach())).mean()  # -log D(x) - log(1 - D(G(z)))
    g_loss = F.softplus(-d(x_fake)).mean()  # -log D(G(z))
    # END SOLUTION
    return d_loss, g_loss


def loss_minimax(g: nn.Module, d: nn.Module, x_real: Tensor, *, device: torch.device | str
                 ) -> tuple[Tensor, Tensor]:
    """Handout 1.1 (optional, not graded): the saturating minimax G loss, for ``run_gan.py --loss_type minimax``.

    L_D as in 1.2,    L_G = E_z[log(1 - D(G(z)))]

    Same arguments and returns as ``loss_nonsaturating``. Its G gradient vanishes when D confidently rejects
    the fakes (h -> -inf), which is why 1.2 replaces it.
    """
    # BEGIN SOLUTION: as loss_nonsaturating, with g_loss = mean of log(1 - sigmoid(h_fake)) = -softplus(h_fake)
    # HANDOUT: L_D as in 1.2 and L_G = E_z[log(1 - D(G(z)))]; return (d_loss, g_loss), two scalars
    z = torch.randn(x_real.shape[0], g.dim_z, device=device)  # (B, dim_z)
    x_fake = g(z)  # (B, 1, 28, 28)
    d_loss = F.softplus(-d(x_real)).mean() + F.softplus(d(x_fake.detach())).mean()  # -log D(x) - log(1 - D(G(z)))
    g_loss = -F.softplus(d(x_fake)).mean()  # log(1 - D(G(z)))
    # END SOLUTION
    return d_loss, g_loss


def conditional_loss_nonsaturating(g: nn.Module, d: nn.Module, x_real: Tensor, y_real: Tensor, *,
                                   device: torch.device | str) -> tuple[Tensor, Tensor]:
    """Handout 3.2: the class-conditional non-saturating GAN, with D the projection discriminator of 3.1.

    L_D = -E_(x,y)[log D(x, y)] - E_(z,y)[log(1 - D(G(z, y), y))],    L_G = -E_(z,y)[log D(G(z, y), y)]

    Args:
        g: conditional generator, ``g(z, y)`` with z (B, g.dim_z) and y (B,) integer labels.
        d: conditional discriminator, ``d(x, y)`` -> logits (B,).
        x_real: real images (B, 1, 28, 28) in [-1, 1].
        y_real: their integer class labels (B,), in 0..9.
        device: where to create new tensors.
    Returns:
        (d_loss, g_loss): two scalar tensors, each averaged over the batch.

    The fakes' labels y follow the data's p(y): take the real batch's labels y_real, or draw them uniformly over
    all g.num_classes classes (0..9); both are graded as correct.
    """
    # BEGIN SOLUTION: as loss_nonsaturating, with labels everywhere: score each real image under its own label, and draw each fake with labels y (y_real, or uniform draws) that d then scores it under
    # HANDOUT: L_D = -E_(x,y)[log D(x, y)] - E_(z,y)[log(1 - D(G(z, y), y))] and L_G = -E_(z,y)[log D(G(z, y), y)], with z ~ N(0, I) of shape (B, g.dim_z) and D(x, y) = sigmoid(d(x, y)); return (d_loss, g_loss), two scalars
    y_fake = y_real  # the fakes' labels: distributed as the data's
    z = torch.randn(x_real.shape[0], g.dim_z, device=device)  # (B, dim_z)
    x_fake = g(z, y_fake)  # (B, 1, 28, 28)
    d_loss = (F.softplus(-d(x_real, y_real)).mean()  # -log D(x, y)
              + F.softplus(d(x_fake.detach(), y_fake)).mean())  # -log(1 - D(G(z, y), y))
    g_loss = F.softplus(-d(x_fake, y_fake)).mean()  # -log D(G(z, y), y)
    # END SOLUTION
    return d_loss, g_loss


def loss_wasserstein_gp(g: nn.Module, d: nn.Module, x_real: Tensor, *, device: torch.device | str
                        ) -> tuple[Tensor, Tensor]:
    """Handout 4.5: WGAN-GP with lambda = 10; d is the critic and its output h(x) is used as is.

    L_D = E_z[D(G(z))] - E_x[D(x)] + lambda E[(||grad_x D(x_hat)||_2 - 1)^2],    L_G = -E_z[D(G(z))]

    where x_hat = alpha x_1 + (1 - alpha) x_2, with x_1 = G(z) a fake, x_2 = x a real image and alpha ~ U[0, 1],
    for each sample. Same arguments and returns as ``loss_nonsaturating``.
    """
    # BEGIN SOLUTION: one alpha ~ U[0, 1] per sample, shape (B, 1, 1, 1); take the gradient of d at x_hat with torch.autograd.grad(..., create_graph=True) so that the penalty reaches D's parameters; a norm per sample over all its pixels
    # HANDOUT: L_D = E_z[D(G(z))] - E_x[D(x)] + lambda E[(||grad D(x_hat)||_2 - 1)^2] with lambda = 10 and x_hat = alpha x_1 + (1 - alpha) x_2, x_1 = G(z), x_2 = x, alpha ~ U[0, 1]; L_G = -E_z[D(G(z))]; return (d_loss, g_loss), two scalars
    z = torch.randn(x_real.shape[0], g.dim_z, device=device)  # (B, dim_z)
    x_fake = g(z)  # (B, 1, 28, 28)
    alpha = torch.rand(x_real.shape[0], 1, 1, 1, dtype=x_real.dtype, device=device)  # (B, 1, 1, 1)
    x_hat = (alpha * x_real + (1 - alpha) * x_fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)  # (B, 1, 28, 28)
    penalty = (grad.flatten(1).norm(dim=1) - 1).square().mean()  # E[(||grad D(x_hat)||_2 - 1)^2]
    d_loss = d(x_fake.detach()).mean() - d(x_real).mean() + GP_LAMBDA * penalty
    g_loss = -d(x_fake).mean()  # -E[D(G(z))]
    # END SOLUTION
    return d_loss, g_loss
