"""Where the grid checks find Fashion-MNIST on the grading machine, looked up without torch: a grading whose grids
cannot be judged here says so before it imports torch and the classifier (seconds of CPU) for nothing.
grading/grids.py loads the data from the folders found here.
"""
from __future__ import annotations

import os
from pathlib import Path

from codebase.data import DEBIAN_DIR, DataError, find_split

ROOT = Path(__file__).resolve().parents[1]


class GridsUnavailable(RuntimeError):
    """The grading machine lacks what the grid checks need (classifier weights, Fashion-MNIST); says what."""


def data_dirs() -> list[Path]:
    """The folders searched, in order: only $FASHION_MNIST_DIR when it is set."""
    named = os.environ.get("FASHION_MNIST_DIR")
    return [Path(named)] if named else [DEBIAN_DIR, Path("/opt/grader-data/FashionMNIST/raw"), ROOT / "data",
                                        ROOT / "data" / "FashionMNIST" / "raw"]


def folders() -> list[Path]:
    """The searched folders that hold both splits' files, in order; raises GridsUnavailable, naming the fix, if
    none does."""
    found, problems = [], []
    for folder in data_dirs():
        if not folder.is_dir():
            problems.append(f"{folder}: no such folder")
            continue
        try:
            for split in ("train", "test"):
                find_split(split, folder, download=False)
            found.append(folder)
        except DataError as error:
            problems.append(str(error).replace("--data_dir ", "")[:200])
    if not found:
        raise unavailable(problems)
    return found


def unavailable(problems: list[str]) -> GridsUnavailable:
    return GridsUnavailable("Fashion-MNIST is not on the grading machine (apt-get install dataset-fashion-mnist, or "
                            f"set FASHION_MNIST_DIR): {'; '.join(problems[:3])}")
