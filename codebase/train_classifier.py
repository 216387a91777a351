"""Retrain the Fashion-MNIST classifier behind FID, KID and class accuracy (codebase/assets/fmnist_classifier.pt).

    python -m codebase.train_classifier               # seed 0, 6 epochs, ~10 min on 2 cores: the committed weights (93.6%)
    python -m codebase.train_classifier --out my.pt   # elsewhere; then `python -m codebase.evaluate --classifier my.pt ...`

Scores are only comparable when they come from the same weights file; the evaluation prints its hash.
"""
import argparse
import sys
from pathlib import Path

from codebase.classifier import WEIGHTS_PATH, train_classifier
from codebase.data import DataError
from codebase.checkpoint import save_checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=6, help="default: %(default)s")
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    p.add_argument("--data_dir", default=None, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--out", default=str(WEIGHTS_PATH), help="default: %(default)s")
    args = p.parse_args()
    if args.epochs < 1:
        p.error(f"--epochs must be at least 1, got {args.epochs}")
    try:
        state = train_classifier(epochs=args.epochs, seed=args.seed, data_dir=args.data_dir)
    except DataError as e:
        sys.exit(f"error: {e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, state)
    print(f"test accuracy {state['test_accuracy']:.4f} after {state['train']['seconds']:.0f} s; "
          f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
