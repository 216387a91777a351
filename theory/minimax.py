"""Handout 1.1 on a 1-D toy: the minimax generator loss stalls where the non-saturating one learns.

    python -m theory.minimax [--steps 600] [--seed 0] [--out_dir out_demo_minimax]

Data: N(3, 0.5^2). Generator: x = theta + 0.5 z with one parameter, theta = -3 at the start. Discriminator: a
small MLP that gets a head start, as it does early in real training when fakes are easy to reject. Both runs
share the seed, the discriminator loss and everything else; only the generator loss differs.

The generator uses plain SGD, so its step is proportional to its gradient, the quantity 1.1 is about (Adam
rescales each step by a running gradient size, which hides a small gradient on a one-parameter problem).
The losses are the handout's ``loss_minimax`` and ``loss_nonsaturating`` from ``codebase/gan.py``. Writes
``out_demo_minimax/grad_norm.png``: |dL_G/dtheta|, the mean D(G(z)) on a fixed z and theta against step, for both
losses. The minimax gradient is -E[D(G(z)) dh/dtheta] (docs/theory.md, 1.1): the middle panel is its weight.
"""
from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from codebase.gan import loss_minimax, loss_nonsaturating  # noqa: E402

DATA_MEAN, STD, THETA_0 = 3.0, 0.5, -3.0
LOSSES = {"minimax": loss_minimax, "nonsaturating": loss_nonsaturating}  # both share L_D; only L_G differs


class ShiftGenerator(nn.Module):
    """x = theta + std * z: z (B, 1) -> x (B, 1). One parameter, the mean."""

    dim_z = 1

    def __init__(self, theta: float, std: float):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta))
        self.std = std

    def forward(self, z: Tensor) -> Tensor:
        return self.theta + self.std * z


class MLPDiscriminator(nn.Module):
    """x (B, 1) -> logits (B,)."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                 nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)  # (B, 1) -> (B,)


def train(loss_name: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """One GAN run with the given generator loss. Returns per-step |dL_G/dtheta|, mean D(G(z)) and theta."""
    torch.manual_seed(args.seed)
    device = torch.device("cpu")
    g, d = ShiftGenerator(THETA_0, STD), MLPDiscriminator()
    opt_g = torch.optim.SGD(g.parameters(), lr=args.g_lr)
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.5, 0.999))
    loss_fn = LOSSES[loss_name]
    z_eval = torch.randn(1024, 1, generator=torch.Generator().manual_seed(args.seed))  # fixed z for D(G(z))
    history: dict[str, list[float]] = {"grad_norm": [], "d_fake": [], "theta": []}
    for step in range(-args.d_head_start, args.steps):
        x_real = DATA_MEAN + STD * torch.randn(args.batch_size, 1)  # (B, 1)
        # (1) update D (d_loss is the same for both losses and sees only detached fakes)
        d_loss, _ = loss_fn(g, d, x_real, device=device)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        if step < 0:
            continue  # D's head start
        # (2) update G against the updated D
        _, g_loss = loss_fn(g, d, x_real, device=device)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        with torch.no_grad():
            history["d_fake"].append(torch.sigmoid(d(g(z_eval))).mean().item())  # mean sigma(h(G(z)))
        history["grad_norm"].append(g.theta.grad.abs().item())
        history["theta"].append(g.theta.item())
        opt_g.step()
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600, help="generator steps per run (default: %(default)s)")
    parser.add_argument("--d_head_start", type=int, default=200,
                        help="D steps before G starts (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=256,
                        help="real and fake samples per step (default: %(default)s)")
    parser.add_argument("--g_lr", type=float, default=0.1,
                        help="generator learning rate, plain SGD (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of both runs (default: %(default)s)")
    parser.add_argument("--out_dir", default="out_demo_minimax",
                        help="where grad_norm.png goes (default: %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny networks run fastest on one thread
    os.makedirs(args.out_dir, exist_ok=True)

    runs = {name: train(name, args) for name in LOSSES}
    for name, h in runs.items():
        print(f"{name:>13}: |dL_G/dtheta| {h['grad_norm'][0]:.2e} -> {h['grad_norm'][-1]:.2e}, "
              f"mean D(G(z)) {h['d_fake'][0]:.2e} -> {h['d_fake'][-1]:.2e}, "
              f"theta {h['theta'][0]:+.2f} -> {h['theta'][-1]:+.2f} (data mean {DATA_MEAN:+.1f}) in {args.steps} steps")

    fig, (ax_grad, ax_d, ax_theta) = plt.subplots(1, 3, figsize=(12, 3.5))
    for name, h in runs.items():
        ax_grad.semilogy(h["grad_norm"], label=name, lw=1)
        ax_d.semilogy(h["d_fake"], label=name, lw=1)
        ax_theta.plot(h["theta"], label=name)
    ax_grad.set(xlabel="generator step", ylabel=r"$|\partial L_G / \partial \theta|$", title="generator gradient")
    ax_d.set(xlabel="generator step", ylabel=r"mean $D(G(z)) = \sigma(h)$",
             title=r"the weight $\sigma(h)$ of the minimax gradient")
    ax_theta.axhline(DATA_MEAN, color="gray", ls="--", label="data mean")
    ax_theta.set(xlabel="generator step", ylabel=r"$\theta$", title="generator mean")
    for ax in (ax_grad, ax_d, ax_theta):
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out_dir, "grad_norm.png"), dpi=70)

if __name__ == "__main__":
    main()
