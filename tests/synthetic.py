"""Tiny Fashion-MNIST look-alikes in IDX format, written independently of codebase.data, for the tests."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian dims, then the bytes."""
    array = np.asarray(array, dtype=np.uint8)
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool = True) -> None:
    prefix = "train" if split == "train" else "t10k"
    folder.mkdir(parents=True, exist_ok=True)
    for kind, ndim, array in (("images", 3, images), ("labels", 1, labels)):
        data = idx_bytes(array)
        name = f"{prefix}-{kind}-idx{ndim}-ubyte"
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def make_dataset(folder: Path, n_train: int = 128, n_test: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write train and test splits of class-dependent blobs; returns the train (images, labels)."""
    rng = np.random.default_rng(seed)
    out = None
    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        for i, y in enumerate(labels):  # a bright bar whose row depends on the class
            images[i, 2 + 2 * int(y):4 + 2 * int(y), 4:24] = 250
        write_split(folder, split, images, labels)
        out = out or (images, labels)
    return out
