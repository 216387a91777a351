"""Fashion-MNIST from IDX files, parsed and validated here (no torchvision dataset, no per-sample transforms).

A folder named with ``--data_dir`` (or else ``$FASHION_MNIST_DIR``) is the only one used: if it lacks a file, the
run stops and says so, rather than training on data from elsewhere. Without either, the files are looked for in
``./data`` (and torchvision's ``./data/FashionMNIST/raw``), then Debian's ``/usr/share/datasets/fashion-mnist``
(``apt-get install dataset-fashion-mnist``), and torchvision downloads them into ``./data`` when none has them and
the machine is online. Files may be gzipped or not.

A split is kept in memory as one uint8 tensor (N, 28, 28); ``to_unit_range`` scales a batch to [-1, 1].
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_INSTALL_HINT = ("Install the data with `sudo apt-get install dataset-fashion-mnist`, put the four IDX files in "
                 "./data, or point --data_dir (or $FASHION_MNIST_DIR) at a folder that holds them.")


class DataError(Exception):
    """Missing or invalid data; the message names the file and the fix."""


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def explicit_dir(data_dir: str | os.PathLike | None = None) -> tuple[Path, str] | None:
    """(folder, where it was named) when the user named one with --data_dir or $FASHION_MNIST_DIR, else None."""
    if data_dir:
        return Path(data_dir), "--data_dir"
    if os.environ.get("FASHION_MNIST_DIR"):
        return Path(os.environ["FASHION_MNIST_DIR"]), "$FASHION_MNIST_DIR"
    return None


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched, in order: only the named one when there is one."""
    named = explicit_dir(data_dir)
    if named:
        return [named[0]]
    return [Path("data"), Path("data/FashionMNIST/raw"), DEBIAN_DIR]


def _check_named_dir(folder: Path, how: str, split: str) -> None:
    """A named folder must exist, be a folder, be readable and hold both files of the split."""
    if not folder.exists():
        raise DataError(f"{how} {folder}: no such folder. Check the path, or leave {how} out to use the default "
                        f"places.")
    if not folder.is_dir():
        raise DataError(f"{how} {folder} is a file, not a folder. Point it at the folder that holds the four IDX "
                        f"files.")
    try:
        os.listdir(folder)
    except OSError as e:
        raise DataError(f"{how} {folder} cannot be read ({e.strerror}). Fix its permissions, or copy the files "
                        f"to a folder you can read.") from None
    missing = [f"{n}[.gz]" for n in _FILES[split] if not _find_file(folder, n)]
    if missing:
        raise DataError(f"{how} {folder} lacks {' and '.join(missing)}. Put all four Fashion-MNIST IDX files "
                        f"there, or leave {how} out to use the default places.")


def download_fashion_mnist(root: Path) -> None:
    """Fetch the files with torchvision (needs internet); raise DataError if that fails."""
    try:
        from torchvision.datasets import FashionMNIST

        for train in (True, False):
            FashionMNIST(root=str(root), train=train, download=True)
    except Exception as e:  # offline, DNS failure, checksum mismatch, ...
        raise DataError(f"could not download Fashion-MNIST ({type(e).__name__}: {e}).") from None


def find_split(split: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> tuple[Path, Path]:
    """Paths of (images, labels) for ``split`` ('train' or 'test'), from the first folder that holds both."""
    names = _FILES[split]
    named = explicit_dir(data_dir)
    if named:
        _check_named_dir(*named, split)
        folder = named[0]
        return _find_file(folder, names[0]), _find_file(folder, names[1])
    dirs = candidate_dirs(data_dir)
    for folder in dirs:
        paths = [_find_file(folder, n) for n in names]
        if all(paths):
            return paths[0], paths[1]
    if download:
        try:
            download_fashion_mnist(Path("data"))
            return find_split(split, data_dir, download=False)
        except DataError as e:
            reason = f" Download failed too: {e}"
    else:
        reason = ""
    searched = ", ".join(str(d) for d in dirs)
    raise DataError(f"Fashion-MNIST {split} files ({names[0]}[.gz], {names[1]}[.gz]) not found in: {searched}."
                    f"{reason} {_INSTALL_HINT}")


def read_idx(path: str | os.PathLike) -> Tensor:
    """Read one IDX file of unsigned bytes (gzipped or not) into a uint8 tensor of the header's shape."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except PermissionError as e:
        raise DataError(f"{path} cannot be read ({e.strerror}). Fix its permissions, or copy the data to a folder "
                        f"you can read.") from None
    except (OSError, EOFError, zlib.error) as e:  # unreadable, truncated or corrupt gzip
        raise DataError(f"{path} is unreadable or corrupt ({e}). Delete it and reinstall the data. "
                        f"{_INSTALL_HINT}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] not in (1, 3):
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number {raw[:4].hex() or 'empty'}). "
                        f"Delete it and reinstall the data. {_INSTALL_HINT}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header. Delete it and reinstall the data. {_INSTALL_HINT}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if 0 in shape:
        raise DataError(f"{path} holds no samples (its header gives shape {shape}). Delete it and reinstall the "
                        f"data. {_INSTALL_HINT}")
    expected = header + math.prod(shape)
    if len(raw) != expected:
        raise DataError(f"{path} holds {len(raw)} bytes but its header {shape} needs {expected}: the file is "
                        f"truncated or corrupt. Delete it and reinstall the data. {_INSTALL_HINT}")
    import torch  # here: the data is found (and its absence said) without importing torch

    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).view(*shape)


def load_fashion_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
                       download: bool = True) -> tuple[Tensor, Tensor]:
    """Images uint8 (N, 28, 28) and labels int64 (N,) of a validated split."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    image_path, label_path = find_split(split, data_dir, download)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.dim() != 3 or tuple(images.shape[1:]) != (28, 28):
        raise DataError(f"{image_path} should hold 28x28 images but its shape is {tuple(images.shape)}. "
                        f"Is it a labels file? {_INSTALL_HINT}")
    if labels.dim() != 1:
        raise DataError(f"{label_path} should hold one label per image but its shape is {tuple(labels.shape)}. "
                        f"{_INSTALL_HINT}")
    if len(images) != len(labels):
        raise DataError(f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels: the "
                        f"files are from different splits or damaged. {_INSTALL_HINT}")
    if len(labels) == 0:
        raise DataError(f"{label_path} holds no samples. {_INSTALL_HINT}")
    if int(labels.max()) >= len(CLASSES):
        raise DataError(f"{label_path} has label {int(labels.max())}, outside 0-9: the file is corrupt. "
                        f"{_INSTALL_HINT}")
    return images, labels.long()


def to_unit_range(images: Tensor) -> Tensor:
    """uint8 (B, 28, 28) in [0, 255] -> float (B, 1, 28, 28) in [-1, 1]."""
    return images.unsqueeze(1).float().div(127.5).sub(1.0)
