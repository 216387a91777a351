"""A second correct gan.py, written differently from codebase/gan.py: the grading suite must give it full marks.

It draws its random numbers in another order and amount (alpha before z; a fresh z and a second G pass for the
G loss; fresh uniform fake labels), does not detach the fakes in the D loss, and uses other, equivalent
formulas (binary cross-entropy with logits, ``grad_outputs``, ``view(B, -1)`` norms).
"""
import torch
import torch.nn.functional as F


def _bce(logits, target):
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def loss_nonsaturating(g, d, x_real, *, device):
    batch = x_real.shape[0]
    d_loss = _bce(d(x_real), 1.0) + _bce(d(g(torch.randn(batch, g.dim_z, device=device))), 0.0)
    g_loss = _bce(d(g(torch.randn(batch, g.dim_z, device=device))), 1.0)
    return d_loss, g_loss


def conditional_loss_nonsaturating(g, d, x_real, y_real, *, device):
    batch = x_real.shape[0]
    y_fake = torch.randint(0, 10, (batch,), device=device)
    x_fake = g(torch.empty(batch, g.dim_z, device=device).normal_(), y_fake)
    d_loss = _bce(d(x_real, y_real), 1.0) + _bce(d(x_fake, y_fake), 0.0)
    g_loss = -F.logsigmoid(d(x_fake, y_fake)).mean()
    return d_loss, g_loss


def loss_wasserstein_gp(g, d, x_real, *, device):
    batch = x_real.shape[0]
    alpha = torch.empty(batch, device=device).uniform_(0, 1).view(batch, 1, 1, 1)
    x_fake = g(torch.randn(batch, g.dim_z, device=device))
    x_hat = (x_fake + alpha * (x_real - x_fake)).detach().requires_grad_()
    out = d(x_hat)
    grad = torch.autograd.grad(out, x_hat, grad_outputs=torch.ones_like(out), create_graph=True)[0]
    penalty = ((grad.view(batch, -1).norm(2, dim=1) - 1) ** 2).mean()
    d_loss = d(x_fake).mean() - d(x_real).mean() + 10 * penalty
    g_loss = -d(x_fake).mean()
    return d_loss, g_loss
