"""Calibrate the automatic grid checks (grading/grids.py): the scores of real images, a blank grid, noise, copies
of real images, and the final grid of each run that bench/diagnostics.py trained (the reference over three seeds
per GAN, one epoch each, and the catalogued mistakes), as a Markdown table.

    python bench/diagnostics.py --out /tmp/diag    # the runs (about 25 epochs), if not there yet
    python bench/grids.py --runs /tmp/diag         # the table
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from grading import grids  # noqa: E402


def png(images: torch.Tensor) -> bytes:
    """uint8 (100, 28, 28) -> the PNG bytes of the run scripts' grid (as codebase/train.py saves it)."""
    from torchvision.utils import save_image

    grid = make_grid(images.unsqueeze(1).float() / 255, nrow=10)
    buffer = io.BytesIO()
    save_image(grid, buffer, format="png")
    return buffer.getvalue()


def final_grid(run: Path) -> Path | None:
    fakes = sorted(run.glob("fake_*.png"), key=lambda p: int(p.stem.split("_")[1]))
    return fakes[-1] if fakes else None


def made_up() -> dict[str, tuple[bytes, bool]]:
    """Grids no generator drew: (PNG, conditional)."""
    ref = grids.reference_data()
    reals = ref["reals"]
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (100, 28, 28), generator=g, dtype=torch.uint8)
    picked = reals[torch.randperm(len(reals), generator=g)[:100]]
    return {"real images (as real.png)": (png(picked), False),
            "real images, mirrored": (png(picked.flip(-1)), False),
            "blank (black)": (png(torch.zeros(100, 28, 28, dtype=torch.uint8)), False),
            "uniform noise": (png(noise), False),
            "grey": (png(torch.full((100, 28, 28), 128, dtype=torch.uint8)), False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, help="bench/diagnostics.py's --out folder")
    args = parser.parse_args()
    start = time.perf_counter()
    grids.prepare()
    print(f"reference loaded in {time.perf_counter() - start:.1f} s\n")
    rows = {name: grids.judge(data, cond) for name, (data, cond) in made_up().items()}
    for run in sorted(args.runs.iterdir()) if args.runs else []:
        grid = final_grid(run) if run.is_dir() else None
        if grid:
            rows[run.name.replace("__", ": ").replace("_", " ")] = grids.judge(grid.read_bytes(),
                                                                             run.name.startswith("conditional"))
            real = run / "real.png"
            if real.is_file() and "real.png copied" not in rows:
                rows["real.png copied"] = grids.judge(real.read_bytes(), False)
                mixed = grids.cut(grid.read_bytes())
                mixed[::10] = grids.cut(real.read_bytes())[::10]  # the first column: 10 real images
                rows["10 real images pasted into a reference grid"] = grids.judge(png(mixed), False)
    print("| grid | realism | classes | column accuracy | copies of real images | healthy |")
    print("|---|---:|---:|---:|---:|---|")
    for name, s in rows.items():
        accuracy = f"{s['accuracy']:.2f}" if "accuracy" in s else ""
        print(f"| {name} | {s['realism']:.2f} | {s['classes']:.1f} | {accuracy} | {s['copies']} | "
              f"{'yes' if s['healthy'] else 'no'} |")
    seconds = (time.perf_counter() - start) / max(1, len(rows))
    print(f"\n{len(rows)} grids, {seconds:.2f} s each on average (loading included)")


if __name__ == "__main__":
    main()
