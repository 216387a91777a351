"""A third correct gan.py: one critic pass on concatenated batches (torch.cat([x_real, x_fake, x_hat]) for WGAN-GP),
losses in float64, fake labels drawn uniformly with torch.multinomial. The grading suite must give it full marks.
"""
import torch
import torch.nn.functional as F


def loss_nonsaturating(g, d, x_real, *, device):
    b = x_real.shape[0]
    x_fake = g(torch.randn(b, g.dim_z, device=device))
    h = d(torch.cat([x_real, x_fake])).double()
    d_loss = F.softplus(-h[:b]).mean() + F.softplus(h[b:]).mean()
    return d_loss, F.softplus(-h[b:]).mean()


def conditional_loss_nonsaturating(g, d, x_real, y_real, *, device):
    b = x_real.shape[0]
    y_fake = torch.multinomial(torch.ones(10), b, replacement=True).to(device)
    x_fake = g(torch.randn(b, g.dim_z, device=device), y_fake)
    h = d(torch.cat([x_real, x_fake]), torch.cat([y_real, y_fake]))
    return F.softplus(-h[:b]).mean() + F.softplus(h[b:]).mean(), F.softplus(-h[b:]).mean()


def loss_wasserstein_gp(g, d, x_real, *, device):
    b = x_real.shape[0]
    alpha = torch.rand(b, 1, 1, 1, device=device)
    x_fake = g(torch.randn(b, g.dim_z, device=device))
    x_hat = (alpha * x_real + (1 - alpha) * x_fake.detach()).requires_grad_(True)
    h = d(torch.cat([x_real, x_fake, x_hat]))
    (grad,) = torch.autograd.grad(h[2 * b:].sum(), x_hat, create_graph=True)
    penalty = (grad.flatten(1).double().norm(dim=1) - 1).square().mean()
    return h[b:2 * b].mean() - h[:b].mean() + 10 * penalty, -h[b:2 * b].mean()
