"""A fifth correct gan.py: the gradient penalty one sample at a time, in a Python loop, with its own alpha each.
The grading suite must give it full marks."""
import torch
import torch.nn.functional as F


def loss_nonsaturating(g, d, x_real, *, device):
    x_fake = g(torch.randn(x_real.shape[0], g.dim_z, device=device))
    h_real, h_fake = d(x_real), d(x_fake)
    return F.softplus(-h_real).mean() + F.softplus(h_fake).mean(), F.softplus(-h_fake).mean()


def conditional_loss_nonsaturating(g, d, x_real, y_real, *, device):
    y_fake = torch.randint(0, 10, y_real.shape, device=device)
    x_fake = g(torch.randn(x_real.shape[0], g.dim_z, device=device), y_fake)
    h_real, h_fake = d(x_real, y_real), d(x_fake, y_fake)
    return F.softplus(-h_real).mean() + F.softplus(h_fake).mean(), F.softplus(-h_fake).mean()


def loss_wasserstein_gp(g, d, x_real, *, device):
    b = x_real.shape[0]
    x_fake = g(torch.randn(b, g.dim_z, device=device))
    terms = []
    for i in range(b):
        a = torch.rand((), device=device)
        x_hat = (a * x_real[i:i + 1] + (1 - a) * x_fake[i:i + 1].detach()).requires_grad_(True)
        (grad,) = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
        terms.append((grad.norm() - 1) ** 2)
    return d(x_fake.detach()).mean() - d(x_real).mean() + 10 * torch.stack(terms).mean(), -d(x_fake).mean()
