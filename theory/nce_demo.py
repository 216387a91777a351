"""Noise-contrastive estimation (handout 5) on a ring of eight Gaussians, in a few seconds on a CPU.

    python -m theory.nce_demo [--steps 3000] [--seed 0] [--out_dir out_nce]

Prints the learned log Z beside the true log-normaliser of exp(-E) (a grid integral) and writes
``out_nce/density.png`` (noise density q | data density | learned density) and ``out_nce/summary.json`` (config
and results). The noise q is the Gaussian with the data's mean and covariance: the classifier tells data from q.
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

from theory.nce import EnergyModel, fit_gaussian, fit_nce, grid, log_normaliser, ring_of_gaussians  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="Adam steps (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=256,
                        help="data samples, and as many noise samples, per step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-2,
                        help="Adam's initial learning rate, cosine-annealed to 0 (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--out_dir", default="out_nce",
                        help="where density.png and summary.json go (default: %(default)s)")
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
        p_noise = noise.log_prob(points.float()).exp().view(n, n)  # (n, n), rows along y
        p_true = data.log_prob(points.float()).exp().view(n, n)
        p_model = model.log_prob(points.float()).exp().view(n, n)  # uses the learned log Z, not the grid one
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.5), sharey=True)
    vmax = max(p_true.max().item(), p_model.max().item())  # data and model share a colour scale; q has its own
    model_title = f"NCE model, exp(-E) / learned Z\nlearned log Z {log_z_learned:.3f}, grid {log_z_true:.3f}"
    panels = [(p_noise, "noise q (contrast), own scale", p_noise.max().item()),
              (p_true, "data density", vmax), (p_model, model_title, vmax)]
    for ax, (p, title, top) in zip(axes, panels):
        ax.imshow(p.numpy(), extent=(-lim, lim, -lim, lim), origin="lower", cmap="viridis", vmin=0, vmax=top)
        ax.set(title=title, xticks=[-4, -2, 0, 2, 4], yticks=[-4, -2, 0, 2, 4])
    fig.tight_layout()
    fig.savefig(os.path.join(args.out_dir, "density.png"), dpi=70, bbox_inches="tight")

    summary = {"config": vars(args), "seconds": seconds, "final_loss": losses[-1],
               "log_z_learned": log_z_learned, "log_z_true": log_z_true, "gap": log_z_learned - log_z_true}
    with open(os.path.join(args.out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
