"""A fourth correct gan.py: the gradient penalty through torch.func (vmap of grad), losses with F.logsigmoid.
The grading suite must give it full marks."""
import torch
import torch.nn.functional as F
from torch.func import grad, vmap


def loss_nonsaturating(g, d, x_real, *, device):
    x_fake = g(torch.randn(len(x_real), g.dim_z, device=device))
    d_loss = -F.logsigmoid(d(x_real)).mean() - F.logsigmoid(-d(x_fake.detach())).mean()
    return d_loss, -F.logsigmoid(d(x_fake)).mean()


def conditional_loss_nonsaturating(g, d, x_real, y_real, *, device):
    x_fake = g(torch.randn(len(x_real), g.dim_z, device=device), y_real)
    d_loss = -F.logsigmoid(d(x_real, y_real)).mean() - F.logsigmoid(-d(x_fake.detach(), y_real)).mean()
    return d_loss, -F.logsigmoid(d(x_fake, y_real)).mean()


def loss_wasserstein_gp(g, d, x_real, *, device):
    b = x_real.shape[0]
    x_fake = g(torch.randn(b, g.dim_z, device=device))
    alpha = torch.rand(b, 1, 1, 1, device=device)
    x_hat = alpha * x_real + (1 - alpha) * x_fake.detach()
    grads = vmap(grad(lambda x: d(x.unsqueeze(0)).squeeze(0)))(x_hat)  # per-sample gradients (B, 1, 28, 28)
    penalty = ((grads.flatten(1).norm(dim=1) - 1) ** 2).mean()
    return d(x_fake.detach()).mean() - d(x_real).mean() + 10 * penalty, -d(x_fake).mean()
