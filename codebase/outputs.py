"""What a run writes into its folder besides checkpoints: the 10x10 sample grids, losses.csv and its plot; and
the list of those files, which a fresh run clears.
"""
from __future__ import annotations

import csv
import errno
import os
from pathlib import Path

import torch

from codebase.config import NUM_CLASSES


def check_writable(out: Path) -> None:
    """Raise the OSError that writing the run's folder ``out`` (or making it) would raise for the file system or
    the permissions, without writing anything: a run that could not save says so before its models are built."""
    place = out
    while not place.exists() and place.parent != place:
        place = place.parent
    if not place.is_dir():
        return  # a file in the way: the first write names it
    if os.statvfs(place).f_flag & os.ST_RDONLY:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(out))
    if not os.access(place, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(out))


def class_ordered_reals(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """100 real images, column c of the 10x10 grid showing class c (wraps if a class is rare): (100, 28, 28)."""
    per_class = [torch.nonzero(labels == c).flatten() for c in range(NUM_CLASSES)]
    idx = [per_class[c][r % len(per_class[c])] if len(per_class[c]) else r for r in range(10) for c in range(10)]
    return images[torch.stack([torch.as_tensor(i) for i in idx])]


def save_grid_image(x: torch.Tensor, path: Path, view: Path | None = None) -> None:
    """Save 100 images in [-1, 1] as a 10x10 grid, and at ``view`` the same grid 3x larger (each pixel a 3x3
    block), to look at without zooming. torchvision loads here, on first use: importing it takes seconds of CPU (it
    loads torch._dynamo), which the first grid pays, not a command that fails before it."""
    from torchvision.utils import make_grid, save_image

    grid = make_grid(x.float(), nrow=10, normalize=True, value_range=(-1, 1))  # (3, 302, 302) in [0, 1]
    save_image(grid, path)
    if view is not None:
        save_image(grid.repeat_interleave(3, dim=1).repeat_interleave(3, dim=2), view)  # (3, 906, 906)


def smooth(values: list[float], window: int) -> list[float]:
    """Centred moving average over ``window`` points (shorter near the ends), so the curve keeps its length."""
    half = window // 2
    sums = [0.0]
    for v in values:
        sums.append(sums[-1] + v)
    out = []
    for i in range(len(values)):
        lo, hi = max(0, i - half), min(len(values), i + half + 1)
        out.append((sums[hi] - sums[lo]) / (hi - lo))
    return out


def plot_losses(csv_path: Path, png_path: Path) -> None:
    """Loss curves from losses.csv: each step as a faint point, a moving average over ~2% of the run as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    window = max(1, len(rows) // 50) | 1  # odd, so the average is centred
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, color in (("d_loss", "tab:blue"), ("g_loss", "tab:orange")):
        values = [float(r[key]) for r in rows]
        ax.scatter(steps, values, s=4, color=color, alpha=0.3, linewidths=0)
        ax.plot(steps, smooth(values, window), color=color, linewidth=1.5,
                label=f"{key} (mean of {window} steps)" if window > 1 else key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title(png_path.parent.name)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def open_log(csv_path: Path, step: int):
    """losses.csv in append mode, holding only the rows up to ``step`` (rows after a checkpoint are redone)."""
    rows = []
    if step and csv_path.exists():
        with open(csv_path) as f:
            rows = [r for r in csv.reader(f)][1:]
        rows = [r for r in rows if r and int(r[0]) <= step]
    f = open(csv_path, "w", newline="")
    writer = csv.writer(f)
    writer.writerows([["step", "epoch", "d_loss", "g_loss"], *rows])
    return f, writer


# Every file a run writes into its folder; a fresh run removes them all first, so nothing stale is left beside it.
VIEW = "latest_x3.png"  # the latest grid, 3x larger, for a person to look at (the grader reads fake_<step>.png)
OUTPUTS = ("checkpoint.pt", "checkpoint.pt.tmp", "config.json", "losses.csv", "losses.png", "metrics.json",
           "real.png", "fake_*.png", VIEW)


def clear_outputs(out: Path, names=OUTPUTS) -> None:
    for pattern in names:
        for path in out.glob(pattern):
            path.unlink()
