"""Noise-contrastive estimation (handout 5) on a ring of eight Gaussians, in a few seconds on a CPU.

    python run_nce.py [--steps 3000] [--seed 0] [--out_dir out_nce]

Prints the learned log Z beside the true log-normaliser of exp(-E) (a grid integral) and writes
``out_nce/density.png`` (true density | learned density) and ``out_nce/summary.json`` (config and results).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from codebase.nce import EnergyModel, fit_gaussian, fit_nce, grid, log_normaliser, ring_of_gaussians  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out_dir", default="out_nce")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # a 64-unit MLP runs fastest on one thread
    os.makedirs(args.out_dir, exist_ok=True)

    data = ring_of_gaussians()
    noise = fit_gaussian(data.sample((10_000,)))
    model = EnergyModel()
    start = time.perf_counter()
    losses = fit_nce(model, data, noise, steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    seconds = time.perf_counter() - start

    log_z_learned = model.log_z.item()
    log_z_true = log_normaliser(model.energy)
    print(f"trained {args.steps} steps in {seconds:.1f} s, final NCE loss {losses[-1]:.4f}")
    print(f"learned log Z    {log_z_learned:+.4f}")
    print(f"true log Z       {log_z_true:+.4f}   (grid integral of exp(-E))")
    print(f"gap              {log_z_learned - log_z_true:+.4f}")

    lim, n = 4.0, 200
    points, _ = grid(lim, n)
    with torch.no_grad():
        p_true = data.log_prob(points.float()).exp().view(n, n)  # (n, n), rows along y
        p_model = model.log_prob(points.float()).exp().view(n, n)  # uses the learned log Z, not the grid one
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharey=True)
    vmax = max(p_true.max().item(), p_model.max().item())
    for ax, p, title in zip(axes, [p_true, p_model], ["data density", "NCE model, exp(-E) / learned Z"]):
        ax.imshow(p.numpy(), extent=(-lim, lim, -lim, lim), origin="lower", cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(title)
    fig.suptitle(f"learned log Z {log_z_learned:.3f}, grid log Z {log_z_true:.3f}")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out_dir, "density.png"), dpi=80)

    summary = {"config": vars(args), "seconds": seconds, "final_loss": losses[-1],
               "log_z_learned": log_z_learned, "log_z_true": log_z_true, "gap": log_z_learned - log_z_true}
    with open(os.path.join(args.out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
