"""Score trained GANs offline: FID, KID, and class accuracy (conditional) or class spread (unconditional).

    python -m codebase.evaluate out_nonsaturating/                          # one run
    python -m codebase.evaluate out_nonsaturating/ out_wasserstein_gp/ ...  # several, side by side
    python -m codebase.evaluate --calibrate                                 # real, blurred, one-class, noise, constant

Each run's generator draws --n images from fixed noise (--seed); they are compared with the 10,000 test images
in the feature space of the project's own classifier (codebase/metrics.py explains the method). Lower FID and
KID are better. Class spread is the effective number of classes among the samples (10 = balanced, 1 = all alike).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from codebase.classifier import ClassifierError, load_classifier
from codebase.data import CLASSES, DataError
from codebase.metrics import (DEFAULT_N, EVAL_SEED, MetricsError, evaluate_images, evaluate_run, fingerprint,
                              real_features, reference_sets)
from codebase.config import pick_device

import torch  # noqa: E402  (after codebase, which sets OpenMP's wait policy before torch loads)


def _percent(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def summary_table(results: dict[str, dict]) -> str:
    """One row per evaluated set: training steps (runs only), FID, KID (± its std over subsets), class accuracy and
    class spread."""
    name_width = max(len(name) for name in results)
    lines = [f"{'':{name_width}}  {'steps':>6}  {'FID':>8}  {'KID (± std)':>15}  {'class acc %':>11}  {'spread':>6}"]
    for name, r in results.items():
        kid = f"{r['kid']:.3f} ± {r['kid_std']:.3f}"
        lines.append(f"{name:{name_width}}  {r.get('step', '-'):>6}  {r['fid']:8.2f}  {kid:>15}  "
                     f"{_percent(r.get('class_accuracy')):>11}  {r['class_spread']:6.2f}")
    return "\n".join(lines)


def per_class_table(results: dict[str, dict]) -> str:
    """One column per set: the share of samples predicted as each class, and the accuracy per conditioned class."""
    names = list(results)
    width = max(12, *(len(n) for n in names))
    label_width = max(len(c) for c in CLASSES)

    def section(title: str, key: str) -> list[str]:
        rows = [f"{title:{label_width}}  " + "  ".join(f"{n:>{width}}" for n in names)]
        for c, label in enumerate(CLASSES):
            cells = [_percent(results[n][key][c]) if key in results[n] else "-" for n in names]
            rows.append(f"{label:{label_width}}  " + "  ".join(f"{cell:>{width}}" for cell in cells))
        return rows

    lines = section("predicted %", "predicted_share")
    if any("per_class_accuracy" in r for r in results.values()):
        lines += [""] + section("accuracy %", "per_class_accuracy")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", help="run folders holding checkpoint.pt, such as out_nonsaturating/")
    p.add_argument("--calibrate", action="store_true", help="score reference sets of real and broken images")
    p.add_argument("--n", type=int, default=DEFAULT_N, help="samples per run (default: %(default)s)")
    p.add_argument("--seed", type=int, default=EVAL_SEED, help="noise of the samples (default: %(default)s)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto picks cuda when available, else cpu")
    p.add_argument("--data_dir", default=None, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--classifier", default=None, help="weights file (default: codebase/assets/fmnist_classifier.pt)")
    p.add_argument("--json", default=None, help="also write every score to this file")
    p.add_argument("--no_cache", action="store_true", help="recompute the test-set features")
    args = p.parse_args()
    if not args.runs and not args.calibrate:
        p.error("give at least one run folder, or --calibrate")
    if args.n < 2:
        p.error("--n must be at least 2: FID needs a covariance")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is visible to torch; use --device cpu (or auto)")

    results = {}
    try:
        classifier = load_classifier(args.classifier, pick_device(args.device))
        real = real_features(classifier, args.data_dir, use_cache=not args.no_cache)
        if args.calibrate:
            for name, (x, y) in reference_sets(args.data_dir, args.n, args.seed).items():
                results[name] = evaluate_images(classifier, real, x, y)
    except (ClassifierError, DataError, MetricsError) as e:
        sys.exit(f"error: {e}")
    failed = []
    for run in args.runs:  # a bad run is reported, and the others are still scored
        try:
            results[run.rstrip("/") or run] = evaluate_run(run, classifier, real, args.n, args.seed)
        except MetricsError as e:
            failed.append(f"error: {e}")
    if not results:
        sys.exit("\n".join(failed))
    print(f"n={args.n} samples per row against {len(real)} test images; seed {args.seed}; "
          f"classifier {fingerprint(classifier)[:16]} (test accuracy {100 * classifier.test_accuracy:.2f}%)\n")
    print(summary_table(results))
    runs = {name: r for name, r in results.items() if "step" in r}
    if runs:
        print()
        print(per_class_table(runs))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if failed:
        sys.exit("\n" + "\n".join(failed))


if __name__ == "__main__":
    main()
