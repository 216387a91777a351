"""Handout 1.1 on a 1-D toy: the minimax generator loss stalls where the non-saturating one learns.

    python demo_minimax.py [--steps 600] [--seed 0] [--out_dir out_demo_minimax]

Data: N(3, 0.5^2). Generator: x = theta + 0.5 z with one parameter, theta = -3 at the start. Discriminator: a
small MLP that gets a head start, as it does early in real training when fakes are easy to reject. Both runs
share the seed, the discriminator loss and everything else; only the generator loss differs.

The generator uses plain SGD, so its step is proportional to its gradient, the quantity 1.1 is about (Adam
rescales each step by a running gradient size, which hides a small gradient on a one-parameter problem).
Writes ``out_demo_minimax/grad_norm.png``: |dL_G/dtheta| and theta against step, for both losses.
"""
from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from codebase.gan import minimax_g_loss, nonsaturating_d_loss, nonsaturating_g_loss  # noqa: E402

DATA_MEAN, STD, THETA_0 = 3.0, 0.5, -3.0
G_LOSSES = {"minimax": minimax_g_loss, "nonsaturating": nonsaturating_g_loss}


class ShiftGenerator(nn.Module):
    """x = theta + std * z: z (B,) -> x (B,). One parameter, the mean."""

    def __init__(self, theta: float, std: float):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta))
        self.std = std

    def forward(self, z: Tensor) -> Tensor:
        return self.theta + self.std * z


class MLPDiscriminator(nn.Module):
    """x (B,) -> logits (B,)."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                 nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.unsqueeze(1)).squeeze(1)  # (B, 1) -> (B,)


def train(g_loss_name: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """One GAN run with the given generator loss. Returns per-step |dL_G/dtheta| and theta."""
    torch.manual_seed(args.seed)
    g, d = ShiftGenerator(THETA_0, STD), MLPDiscriminator()
    opt_g = torch.optim.SGD(g.parameters(), lr=args.g_lr)
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.5, 0.999))
    g_loss_fn = G_LOSSES[g_loss_name]
    history: dict[str, list[float]] = {"grad_norm": [], "theta": []}
    for step in range(-args.d_head_start, args.steps):
        # (1) update D
        x_real = DATA_MEAN + STD * torch.randn(args.batch_size)  # (B,)
        x_fake = g(torch.randn(args.batch_size))  # (B,)
        d_loss = nonsaturating_d_loss(d, x_real, x_fake.detach())
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        if step < 0:
            continue  # D's head start
        # (2) update G
        g_loss = g_loss_fn(d, g(torch.randn(args.batch_size)))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        history["grad_norm"].append(g.theta.grad.abs().item())
        history["theta"].append(g.theta.item())
        opt_g.step()
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--d_head_start", type=int, default=200, help="D steps before G starts")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--g_lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out_dir", default="out_demo_minimax")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny networks run fastest on one thread
    os.makedirs(args.out_dir, exist_ok=True)

    runs = {name: train(name, args) for name in G_LOSSES}
    for name, h in runs.items():
        print(f"{name:>13}: |dL_G/dtheta| at step 0 = {h['grad_norm'][0]:.2e}, "
              f"theta after {args.steps} steps = {h['theta'][-1]:+.2f} (data mean {DATA_MEAN:+.1f})")

    fig, (ax_grad, ax_theta) = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, h in runs.items():
        ax_grad.semilogy(h["grad_norm"], label=name, lw=1)
        ax_theta.plot(h["theta"], label=name)
    ax_grad.set(xlabel="generator step", ylabel=r"$|\partial L_G / \partial \theta|$", title="generator gradient")
    ax_theta.axhline(DATA_MEAN, color="gray", ls="--", label="data mean")
    ax_theta.set(xlabel="generator step", ylabel=r"$\theta$", title="generator mean")
    ax_grad.legend()
    ax_theta.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out_dir, "grad_norm.png"), dpi=80)


if __name__ == "__main__":
    main()
