"""Step time of the two update rules that fit the handout's API, side by side in one run.

    python bench/update_rule.py [--steps 60] [--repeats 3]

With ``(d_loss, g_loss) = loss(g, d, x_real, *, device)``:

* alternating (what codebase/train.py runs): call the loss, step D on d_loss; call it again, step G on g_loss,
  so that G sees the updated D -- two calls, two G forward passes per step;
* simultaneous: one call; d_loss's gradient w.r.t. D's parameters and g_loss's w.r.t. G's, then both steps.

Both rules run on the same random batches for each GAN; repeats interleave the rules, and the median is kept,
so a busy machine slows both alike. Prints ms per step and the ratio alternating / simultaneous.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codebase.checkpoint import build_models  # noqa: E402  codebase first: it sets OpenMP's wait policy
from codebase.config import Config
from codebase.train import ADAM_BETAS, _grads, _step, loss_function  # noqa: E402

import torch  # noqa: E402

RUNS = {"nonsaturating": Config(loss_type="nonsaturating"), "wasserstein_gp": Config(loss_type="wasserstein_gp"),
        "conditional": Config(loss_type="nonsaturating", conditional=True)}


def alternating(loss_fn, g, d, g_opt, d_opt, args):
    d_loss, _ = loss_fn(*args, device="cpu")
    _step(d_opt, d, _grads(d_loss, d, "d_loss"))
    d.requires_grad_(False)
    _, g_loss = loss_fn(*args, device="cpu")
    d.requires_grad_(True)
    _step(g_opt, g, _grads(g_loss, g, "g_loss"))


def simultaneous(loss_fn, g, d, g_opt, d_opt, args):
    d_loss, g_loss = loss_fn(*args, device="cpu")
    d_grads = _grads(d_loss, d, "d_loss", retain=True)
    g_grads = _grads(g_loss, g, "g_loss")
    _step(d_opt, d, d_grads)
    _step(g_opt, g, g_grads)


def time_rule(rule, cfg: Config, steps: int, batch: int = 64) -> float:
    torch.manual_seed(0)
    g, d = build_models(cfg, torch.device("cpu"))
    g_opt = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=ADAM_BETAS[cfg.loss_type])
    d_opt = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=ADAM_BETAS[cfg.loss_type])
    _, loss_fn = loss_function(cfg)
    x = torch.rand(steps + 2, batch, 1, 28, 28) * 2 - 1
    y = torch.randint(10, (steps + 2, batch))
    for i in range(steps + 2):
        if i == 2:  # two warm-up steps
            start = time.perf_counter()
        rule(loss_fn, g, d, g_opt, d_opt, (g, d, x[i]) + ((y[i],) if cfg.conditional else ()))
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed steps per rule and repeat (default: 60)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median is kept (default: 3)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps of batch 64")
    print(f"{'GAN':<16}{'alternating':>13}{'simultaneous':>14}{'ratio':>8}")
    for name, cfg in RUNS.items():
        times = {"alternating": [], "simultaneous": []}
        for _ in range(args.repeats):
            for rule in (alternating, simultaneous):
                times[rule.__name__].append(time_rule(rule, cfg, args.steps))
        alt, sim = (1000 * statistics.median(times[k]) for k in ("alternating", "simultaneous"))
        print(f"{name:<16}{alt:>10.1f} ms{sim:>11.1f} ms{alt / sim:>7.2f}x")


if __name__ == "__main__":
    main()
