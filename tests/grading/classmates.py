"""A class of independently written correct solutions, and copies of them disguised as a copier would.

Each style fills the starter's three stubs its own way (three more are bare functions, ``BARE``), as different students do: binary cross-entropy with target
tensors, a loss module, softplus, logsigmoid, a stable log-sigmoid written out, real and fake scored in one call,
helper functions, uniform or data labels, and five ways to take the gradient penalty's norm. Every style must get
35/35 from the grader; no two of them may be flagged as alike, and every ``disguise`` of one must be.
"""
from __future__ import annotations

import random
import re

from grading import handout

STUBBED = ("loss_nonsaturating", "conditional_loss_nonsaturating", "loss_wasserstein_gp")

STYLES: dict[str, tuple[str, str, str]] = {
    "bce_targets": ("""
    batch = x_real.size(0)
    noise = torch.randn(batch, g.dim_z, device=device)
    fake = g(noise)
    real_logits = d(x_real)
    fake_logits = d(fake.detach())
    d_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
              + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    gen_logits = d(fake)
    g_loss = F.binary_cross_entropy_with_logits(gen_logits, torch.ones_like(gen_logits))
""", """
    batch = x_real.size(0)
    noise = torch.randn(batch, g.dim_z, device=device)
    fake = g(noise, y_real)
    real_logits = d(x_real, y_real)
    fake_logits = d(fake.detach(), y_real)
    d_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
              + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    gen_logits = d(fake, y_real)
    g_loss = F.binary_cross_entropy_with_logits(gen_logits, torch.ones_like(gen_logits))
""", """
    batch = x_real.size(0)
    noise = torch.randn(batch, g.dim_z, device=device)
    fake = g(noise)
    eps = torch.rand(batch, 1, 1, 1, device=device)
    mixed = eps * fake.detach() + (1 - eps) * x_real
    mixed.requires_grad_(True)
    scores = d(mixed)
    grads = torch.autograd.grad(outputs=scores, inputs=mixed, grad_outputs=torch.ones_like(scores),
                                create_graph=True, retain_graph=True)[0]
    grads = grads.view(batch, -1)
    gp = ((grads.norm(2, dim=1) - 1) ** 2).mean()
    d_loss = d(fake.detach()).mean() - d(x_real).mean() + 10 * gp
    g_loss = -d(fake).mean()
"""),
    "loss_module": ("""
    criterion = nn.BCEWithLogitsLoss()
    n = len(x_real)
    generated = g(torch.randn(n, g.dim_z, device=device))
    real_target = torch.ones(n, device=device)
    fake_target = torch.zeros(n, device=device)
    d_loss = criterion(d(x_real), real_target) + criterion(d(generated.detach()), fake_target)
    g_loss = criterion(d(generated), real_target)
""", """
    criterion = nn.BCEWithLogitsLoss()
    n = len(x_real)
    labels = torch.randint(0, g.num_classes, (n,), device=device)
    generated = g(torch.randn(n, g.dim_z, device=device), labels)
    real_target = torch.ones(n, device=device)
    fake_target = torch.zeros(n, device=device)
    d_loss = criterion(d(x_real, y_real), real_target) + criterion(d(generated.detach(), labels), fake_target)
    g_loss = criterion(d(generated, labels), real_target)
""", """
    n = len(x_real)
    generated = g(torch.randn(n, g.dim_z, device=device))
    t = torch.rand(n, device=device)[:, None, None, None]
    between = (t * x_real + (1 - t) * generated).detach().requires_grad_()
    slope = torch.autograd.grad(d(between).sum(), between, create_graph=True)[0]
    slope_norm = torch.sqrt(slope.pow(2).sum(dim=(1, 2, 3)) + 1e-12)
    penalty = torch.mean((slope_norm - 1.0) ** 2)
    wasserstein = d(generated.detach()).mean() - d(x_real).mean()
    d_loss = wasserstein + 10.0 * penalty
    g_loss = -torch.mean(d(generated))
"""),
    "logsigmoid_named": ("""
    z = torch.randn((x_real.shape[0], g.dim_z), device=device)
    x_fake = g(z)
    log_d_real = F.logsigmoid(d(x_real))
    log_one_minus_d_fake = F.logsigmoid(-d(x_fake.detach()))
    d_loss = -(log_d_real.mean() + log_one_minus_d_fake.mean())
    log_d_fake = F.logsigmoid(d(x_fake))
    g_loss = -log_d_fake.mean()
""", """
    z = torch.randn((x_real.shape[0], g.dim_z), device=device)
    y_fake = torch.randint(g.num_classes, size=y_real.shape, device=device)
    x_fake = g(z, y_fake)
    log_d_real = F.logsigmoid(d(x_real, y_real))
    log_one_minus_d_fake = F.logsigmoid(-d(x_fake.detach(), y_fake))
    d_loss = -(log_d_real.mean() + log_one_minus_d_fake.mean())
    g_loss = -F.logsigmoid(d(x_fake, y_fake)).mean()
""", """
    z = torch.randn((x_real.shape[0], g.dim_z), device=device)
    x_fake = g(z)
    alpha = torch.rand((x_real.shape[0], 1, 1, 1), device=device)
    x_hat = alpha * x_fake.detach() + (1 - alpha) * x_real
    x_hat.requires_grad = True
    (gradient,) = torch.autograd.grad(d(x_hat).sum(), [x_hat], create_graph=True)
    norms = torch.linalg.vector_norm(gradient.flatten(start_dim=1), dim=1)
    d_loss = d(x_fake.detach()).mean() - d(x_real).mean() + 10 * ((norms - 1) ** 2).mean()
    g_loss = -d(x_fake).mean()
"""),
    "stable_by_hand": ("""
    def log_sigmoid(h):
        return torch.clamp(h, max=0) - torch.log1p(torch.exp(-torch.abs(h)))

    zs = torch.randn(x_real.shape[0], g.dim_z, device=device)
    imgs = g(zs)
    d_loss = -torch.mean(log_sigmoid(d(x_real))) - torch.mean(log_sigmoid(-d(imgs.detach())))
    g_loss = -torch.mean(log_sigmoid(d(imgs)))
""", """
    def log_sigmoid(h):
        return torch.clamp(h, max=0) - torch.log1p(torch.exp(-torch.abs(h)))

    zs = torch.randn(x_real.shape[0], g.dim_z, device=device)
    imgs = g(zs, y_real)
    d_loss = -torch.mean(log_sigmoid(d(x_real, y_real))) - torch.mean(log_sigmoid(-d(imgs.detach(), y_real)))
    g_loss = -torch.mean(log_sigmoid(d(imgs, y_real)))
""", """
    zs = torch.randn(x_real.shape[0], g.dim_z, device=device)
    imgs = g(zs)
    weights = torch.rand(x_real.shape[0], device=device).view(-1, 1, 1, 1).expand_as(x_real)
    inter = weights * x_real + (1 - weights) * imgs.detach()
    inter.requires_grad_(True)
    out = d(inter)
    g_inter, = torch.autograd.grad(out, inter, torch.ones_like(out), create_graph=True)
    sq = torch.einsum("bi,bi->b", g_inter.flatten(1), g_inter.flatten(1))
    penalty = ((sq.sqrt() - 1) ** 2).mean()
    d_loss = torch.mean(d(imgs.detach())) - torch.mean(d(x_real)) + 10 * penalty
    g_loss = -torch.mean(d(imgs))
"""),
    "one_call": ("""
    b = x_real.shape[0]
    fakes = g(torch.randn(b, g.dim_z, device=device))
    scores = d(torch.cat([x_real, fakes.detach()], dim=0))
    targets = torch.cat([torch.ones(b, device=device), torch.zeros(b, device=device)])
    d_loss = 2 * F.binary_cross_entropy_with_logits(scores, targets)
    g_loss = F.softplus(-d(fakes)).mean()
""", """
    b = x_real.shape[0]
    fakes = g(torch.randn(b, g.dim_z, device=device), y_real)
    scores = d(torch.cat([x_real, fakes.detach()], dim=0), torch.cat([y_real, y_real], dim=0))
    targets = torch.cat([torch.ones(b, device=device), torch.zeros(b, device=device)])
    d_loss = 2 * F.binary_cross_entropy_with_logits(scores, targets)
    g_loss = F.softplus(-d(fakes, y_real)).mean()
""", """
    b = x_real.shape[0]
    fakes = g(torch.randn(b, g.dim_z, device=device))
    a = torch.rand(b, 1, 1, 1, device=device)
    points = (fakes.detach() + a * (x_real - fakes.detach())).requires_grad_(True)
    grad_pts = torch.autograd.grad(d(points).sum(), points, create_graph=True)[0]
    gp = (grad_pts.reshape(b, -1).norm(dim=-1) - 1).pow(2).mean()
    d_loss = -(d(x_real).mean() - d(fakes.detach()).mean()) + 10 * gp
    g_loss = -d(fakes).mean()
"""),
    "softplus_sums": ("""
    m = x_real.shape[0]
    latent = torch.randn(m, g.dim_z, device=device)
    sample = g(latent)
    d_loss = (F.softplus(-d(x_real)).sum() + F.softplus(d(sample.detach())).sum()) / m
    g_loss = F.softplus(-d(sample)).sum() / m
""", """
    m = x_real.shape[0]
    latent = torch.randn(m, g.dim_z, device=device)
    cls = torch.randint(low=0, high=10, size=(m,), device=device)
    sample = g(latent, cls)
    d_loss = (F.softplus(-d(x_real, y_real)).sum() + F.softplus(d(sample.detach(), cls)).sum()) / m
    g_loss = F.softplus(-d(sample, cls)).sum() / m
""", """
    m = x_real.shape[0]
    latent = torch.randn(m, g.dim_z, device=device)
    sample = g(latent)
    mix = torch.rand(m, 1, 1, 1, device=device)
    x_hat = mix * x_real + (1 - mix) * sample.detach()
    x_hat = x_hat.clone().requires_grad_(True)
    critic_hat = d(x_hat)
    dx = torch.autograd.grad(critic_hat.sum(), x_hat, create_graph=True)[0].reshape(m, -1)
    penalty = ((dx.pow(2).sum(1).sqrt() - 1) ** 2).sum() / m
    d_loss = (d(sample.detach()).sum() - d(x_real).sum()) / m + 10 * penalty
    g_loss = -d(sample).sum() / m
"""),
    "helpers": ("""
    def real_term(h):
        return F.softplus(-h).mean()

    def fake_term(h):
        return F.softplus(h).mean()

    x_gen = g(torch.randn(x_real.size(0), g.dim_z, device=device))
    d_loss = real_term(d(x_real)) + fake_term(d(x_gen.detach()))
    g_loss = real_term(d(x_gen))
""", """
    def real_term(h):
        return F.softplus(-h).mean()

    def fake_term(h):
        return F.softplus(h).mean()

    y_gen = y_real.clone()
    x_gen = g(torch.randn(x_real.size(0), g.dim_z, device=device), y_gen)
    d_loss = real_term(d(x_real, y_real)) + fake_term(d(x_gen.detach(), y_gen))
    g_loss = real_term(d(x_gen, y_gen))
""", """
    def penalty_at(points):
        points = points.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(d(points).sum(), points, create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

    x_gen = g(torch.randn(x_real.size(0), g.dim_z, device=device))
    lam = torch.rand(x_real.size(0), 1, 1, 1, device=device)
    d_loss = d(x_gen.detach()).mean() - d(x_real).mean() + 10 * penalty_at(lam * x_real + (1 - lam) * x_gen)
    g_loss = -d(x_gen).mean()
"""),
    "probabilities_by_logit": ("""
    num = x_real.shape[0]
    fake_imgs = g(torch.randn(num, g.dim_z, device=device))
    logit_real, logit_fake = d(x_real), d(fake_imgs.detach())
    loss_real = F.binary_cross_entropy_with_logits(logit_real, torch.full_like(logit_real, 1.0))
    loss_fake = F.binary_cross_entropy_with_logits(logit_fake, torch.full_like(logit_fake, 0.0))
    d_loss = loss_real + loss_fake
    logit_gen = d(fake_imgs)
    g_loss = F.binary_cross_entropy_with_logits(logit_gen, torch.full_like(logit_gen, 1.0))
""", """
    num = x_real.shape[0]
    fake_y = torch.randint(0, g.num_classes, (num,), device=device)
    fake_imgs = g(torch.randn(num, g.dim_z, device=device), fake_y)
    logit_real, logit_fake = d(x_real, y_real), d(fake_imgs.detach(), fake_y)
    loss_real = F.binary_cross_entropy_with_logits(logit_real, torch.full_like(logit_real, 1.0))
    loss_fake = F.binary_cross_entropy_with_logits(logit_fake, torch.full_like(logit_fake, 0.0))
    d_loss = loss_real + loss_fake
    logit_gen = d(fake_imgs, fake_y)
    g_loss = F.binary_cross_entropy_with_logits(logit_gen, torch.full_like(logit_gen, 1.0))
""", """
    num = x_real.shape[0]
    fake_imgs = g(torch.randn(num, g.dim_z, device=device))
    u = torch.empty(num, 1, 1, 1, device=device).uniform_(0, 1)
    interp = torch.lerp(fake_imgs.detach(), x_real, u).requires_grad_(True)
    grad_interp = torch.autograd.grad(d(interp).sum(), interp, create_graph=True)[0]
    grad_norm = grad_interp.view(num, -1).norm(p=2, dim=1)
    d_loss = d(fake_imgs.detach()).mean() - d(x_real).mean() + 10 * torch.mean((grad_norm - 1) ** 2)
    g_loss = -d(fake_imgs).mean()
"""),
    "two_steps": ("""
    noise = torch.randn(x_real.shape[0], g.dim_z, device=device)
    generated = g(noise)
    h_r = d(x_real)
    h_f = d(generated.detach())
    loss_d_real = torch.nn.functional.softplus(-h_r)
    loss_d_fake = torch.nn.functional.softplus(h_f)
    d_loss = loss_d_real.mean() + loss_d_fake.mean()
    h_g = d(generated)
    g_loss = torch.nn.functional.softplus(-h_g).mean()
""", """
    noise = torch.randn(x_real.shape[0], g.dim_z, device=device)
    generated = g(noise, y_real)
    h_r = d(x_real, y_real)
    h_f = d(generated.detach(), y_real)
    loss_d_real = torch.nn.functional.softplus(-h_r)
    loss_d_fake = torch.nn.functional.softplus(h_f)
    d_loss = loss_d_real.mean() + loss_d_fake.mean()
    g_loss = torch.nn.functional.softplus(-d(generated, y_real)).mean()
""", """
    noise = torch.randn(x_real.shape[0], g.dim_z, device=device)
    generated = g(noise)
    w = torch.rand(x_real.shape[0], 1, 1, 1, device=device)
    x_mid = w * x_real + (1 - w) * generated.detach()
    x_mid = x_mid.requires_grad_()
    g_mid = torch.autograd.grad(d(x_mid).sum(), x_mid, create_graph=True)[0]
    norm_mid = g_mid.flatten(1).pow(2).sum(-1).sqrt()
    critic_gap = d(generated.detach()).mean() - d(x_real).mean()
    d_loss = critic_gap + GP_LAMBDA * (norm_mid - 1).pow(2).mean()
    g_loss = -d(generated).mean()
"""),
    "minimal": ("""
    x_fake = g(torch.randn(len(x_real), g.dim_z, device=device))
    d_loss = F.softplus(-d(x_real)).mean() + F.softplus(d(x_fake.detach())).mean()
    g_loss = F.softplus(-d(x_fake)).mean()
""", """
    x_fake = g(torch.randn(len(x_real), g.dim_z, device=device), y_real)
    d_loss = F.softplus(-d(x_real, y_real)).mean() + F.softplus(d(x_fake.detach(), y_real)).mean()
    g_loss = F.softplus(-d(x_fake, y_real)).mean()
""", """
    x_fake = g(torch.randn(len(x_real), g.dim_z, device=device))
    alpha = torch.rand(len(x_real), 1, 1, 1, device=device)
    x_hat = (alpha * x_real + (1 - alpha) * x_fake.detach()).requires_grad_(True)
    grad = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)[0]
    d_loss = (d(x_fake.detach()).mean() - d(x_real).mean()
              + GP_LAMBDA * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean())
    g_loss = -d(x_fake).mean()
"""),
    "loop_penalty": ("""
    size = x_real.shape[0]
    out_fake = g(torch.randn(size, g.dim_z, device=device))
    d_real = d(x_real)
    d_fake = d(out_fake.detach())
    d_loss = torch.mean(F.softplus(-d_real) + F.softplus(d_fake))
    g_loss = torch.mean(F.softplus(-d(out_fake)))
""", """
    size = x_real.shape[0]
    ys = torch.randint(0, 10, (size,), device=device)
    out_fake = g(torch.randn(size, g.dim_z, device=device), ys)
    d_real = d(x_real, y_real)
    d_fake = d(out_fake.detach(), ys)
    d_loss = torch.mean(F.softplus(-d_real) + F.softplus(d_fake))
    g_loss = torch.mean(F.softplus(-d(out_fake, ys)))
""", """
    size = x_real.shape[0]
    out_fake = g(torch.randn(size, g.dim_z, device=device))
    pens = []
    for i in range(size):
        a = torch.rand(1, device=device)
        xi = (a * x_real[i] + (1 - a) * out_fake[i].detach()).unsqueeze(0).requires_grad_(True)
        gi = torch.autograd.grad(d(xi).sum(), xi, create_graph=True)[0]
        pens.append((gi.norm() - 1) ** 2)
    d_loss = torch.mean(d(out_fake.detach()) - d(x_real)) + 10 * torch.stack(pens).mean()
    g_loss = -torch.mean(d(out_fake))
"""),
    "math_comments": ("""
    B = x_real.shape[0]
    Z = torch.randn(B, g.dim_z, device=device)
    G_z = g(Z)
    D_x = d(x_real)
    D_G_z = d(G_z.detach())
    # -log sigmoid(a) = softplus(-a) and -log(1 - sigmoid(a)) = softplus(a)
    d_loss = torch.mean(F.softplus(-D_x)) + torch.mean(F.softplus(D_G_z))
    g_loss = torch.mean(F.softplus(-d(G_z)))
""", """
    B = x_real.shape[0]
    Z = torch.randn(B, g.dim_z, device=device)
    Y = y_real.detach().clone()
    G_z = g(Z, Y)
    D_x = d(x_real, y_real)
    D_G_z = d(G_z.detach(), Y)
    d_loss = torch.mean(F.softplus(-D_x)) + torch.mean(F.softplus(D_G_z))
    g_loss = torch.mean(F.softplus(-d(G_z, Y)))
""", """
    B = x_real.shape[0]
    Z = torch.randn(B, g.dim_z, device=device)
    G_z = g(Z)
    U = torch.rand(B, device=device).reshape(B, 1, 1, 1)
    X_hat = U * G_z.detach() + (1.0 - U) * x_real
    X_hat.requires_grad_(True)
    D_hat = d(X_hat)
    grad_D, = torch.autograd.grad(D_hat, X_hat, grad_outputs=torch.ones_like(D_hat), create_graph=True)
    GP = torch.mean((torch.norm(grad_D.reshape(B, -1), dim=1) - 1.0) ** 2)
    d_loss = torch.mean(d(G_z.detach())) - torch.mean(d(x_real)) + 10.0 * GP
    g_loss = -torch.mean(d(G_z))
"""),
}


# Written as bare functions, without the starter around them, in the three most common textbook forms.
BARE: dict[str, str] = {
    "bare_softplus": """import torch
import torch.nn.functional as F


def loss_nonsaturating(g, d, x_real, *, device):
    z = torch.randn(x_real.shape[0], g.dim_z, device=device)
    x_fake = g(z)
    d_loss = F.softplus(-d(x_real)).mean() + F.softplus(d(x_fake.detach())).mean()
    g_loss = F.softplus(-d(x_fake)).mean()
    return d_loss, g_loss


def conditional_loss_nonsaturating(g, d, x_real, y_real, *, device):
    z = torch.randn(x_real.shape[0], g.dim_z, device=device)
    x_fake = g(z, y_real)
    d_loss = F.softplus(-d(x_real, y_real)).mean() + F.softplus(d(x_fake.detach(), y_real)).mean()
    g_loss = F.softplus(-d(x_fake, y_real)).mean()
    return d_loss, g_loss


def loss_wasserstein_gp(g, d, x_real, *, device):
    z = torch.randn(x_real.shape[0], g.dim_z, device=device)
    x_fake = g(z)
    alpha = torch.rand(x_real.shape[0], 1, 1, 1, device=device)
    x_hat = (alpha * x_real + (1 - alpha) * x_fake.detach()).requires_grad_(True)
    grad = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)[0]
    gp = ((grad.view(x_real.shape[0], -1).norm(dim=1) - 1) ** 2).mean()
    d_loss = d(x_fake.detach()).mean() - d(x_real).mean() + 10 * gp
    g_loss = -d(x_fake).mean()
    return d_loss, g_loss
""",
    "bare_logsig": """import torch
import torch.nn.functional as F


def loss_nonsaturating(g, d, x_real, *, device):
    batch_size = x_real.size(0)
    z = torch.randn(batch_size, g.dim_z, device=device)
    fake = g(z)
    d_loss = -F.logsigmoid(d(x_real)).mean() - F.logsigmoid(-d(fake.detach())).mean()
    g_loss = -F.logsigmoid(d(fake)).mean()
    return d_loss, g_loss


def conditional_loss_nonsaturating(g, d, x_real, y_real, *, device):
    batch_size = x_real.size(0)
    z = torch.randn(batch_size, g.dim_z, device=device)
    fake = g(z, y_real)
    d_loss = -F.logsigmoid(d(x_real, y_real)).mean() - F.logsigmoid(-d(fake.detach(), y_real)).mean()
    g_loss = -F.logsigmoid(d(fake, y_real)).mean()
    return d_loss, g_loss


def loss_wasserstein_gp(g, d, x_real, *, device):
    batch_size = x_real.size(0)
    z = torch.randn(batch_size, g.dim_z, device=device)
    fake = g(z)
    alpha = torch.rand(batch_size, 1, 1, 1, device=device)
    interp = alpha * fake.detach() + (1 - alpha) * x_real
    interp.requires_grad_(True)
    grads = torch.autograd.grad(d(interp).sum(), interp, create_graph=True)[0]
    penalty = ((grads.reshape(batch_size, -1).norm(2, dim=1) - 1) ** 2).mean()
    d_loss = d(fake.detach()).mean() - d(x_real).mean() + 10 * penalty
    g_loss = -d(fake).mean()
    return d_loss, g_loss
""",
    "bare_named": """import torch
import torch.nn.functional as F


def loss_nonsaturating(g, d, x_real, *, device):
    z = torch.randn(x_real.shape[0], g.dim_z, device=device)
    x_fake = g(z)
    real_logits = d(x_real)
    fake_logits = d(x_fake.detach())
    d_loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    g_loss = F.softplus(-d(x_fake)).mean()
    return d_loss, g_loss


def conditional_loss_nonsaturating(g, d, x_real, y_real, *, device):
    z = torch.randn(x_real.shape[0], g.dim_z, device=device)
    x_fake = g(z, y_real)
    real_logits = d(x_real, y_real)
    fake_logits = d(x_fake.detach(), y_real)
    d_loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    g_loss = F.softplus(-d(x_fake, y_real)).mean()
    return d_loss, g_loss


def loss_wasserstein_gp(g, d, x_real, *, device):
    z = torch.randn(x_real.shape[0], g.dim_z, device=device)
    x_fake = g(z)
    alpha = torch.rand(x_real.shape[0], 1, 1, 1, device=device)
    x_hat = alpha * x_real + (1 - alpha) * x_fake.detach()
    x_hat.requires_grad_(True)
    critic = d(x_hat)
    grad = torch.autograd.grad(critic, x_hat, torch.ones_like(critic), create_graph=True)[0]
    gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    d_loss = d(x_fake.detach()).mean() - d(x_real).mean() + 10 * gp
    g_loss = -d(x_fake).mean()
    return d_loss, g_loss
""",
}


def gan_py(style: str) -> str:
    """The starter's gan.py with its three stubs filled in the given style."""
    source = handout.starter_files(names=["codebase/gan.py"])["codebase/gan.py"][0].decode()
    for function, body in zip(STUBBED, STYLES[style]):
        start = source.index(f"def {function}(")
        stub = re.compile(r"^    raise NotImplementedError\(.*\)$", re.M).search(source, start)
        source = source[:stub.start()] + body.strip("\n") + source[stub.end():]
    return source


def solutions() -> dict[str, str]:
    """Every independently written correct gan.py of this module, by name."""
    return {**{style: gan_py(style) for style in STYLES}, **BARE}


def disguise(source: str, seed: int = 0) -> str:
    """A copy as a copier hides it without understanding it: every local name renamed, comments and blank lines
    added, the three functions in another order, and a useless statement or two."""
    rng = random.Random(seed)
    locals_ = sorted({m for m in re.findall(r"^\s+([a-z_][a-z_0-9]*)\s*(?:,\s*[a-z_]\w*\s*)?=(?!=)", source, re.M)}
                     - {"d_loss", "g_loss"})
    for i, name in enumerate(locals_):
        source = re.sub(rf"(?<![\w.]){name}(?!\w)", f"{rng.choice(['tmp', 'val', 'my', 'q'])}_{i}{seed}", source)
    lines = source.split("\n")
    out = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(("d_loss =", "g_loss =")) and rng.random() < 0.5:
            out.append(line[:len(line) - len(line.lstrip())] + "# compute the loss")
        out.append(line)
        if stripped.startswith("return d_loss, g_loss") and rng.random() < 0.5:
            out.append("")
        if stripped.startswith("d_loss =") and line.count("(") == line.count(")") and rng.random() < 0.3:
            out.append(line[:len(line) - len(line.lstrip())] + "unused = None")
    source = "\n".join(out)
    blocks = re.split(r"(?=^def )", source, flags=re.M)
    head, functions = blocks[0], blocks[1:]
    rng.shuffle(functions)
    return head + "".join(functions)
