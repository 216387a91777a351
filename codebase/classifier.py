"""A small Fashion-MNIST classifier: the feature space of the project's FID and KID, and the judge of class accuracy.

Inputs are images in [-1, 1], (B, 1, 28, 28): the range of the generators and of ``data.to_unit_range``.
``features(x)`` is the penultimate layer (B, 128), where FID and KID are measured; ``forward(x)`` gives logits
(B, 10). The committed weights file is one dict ``{"model", "config", "test_accuracy", ...}`` loaded with
``weights_only=True``, so evaluation works offline and never runs pickled code.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from codebase.data import CLASSES, load_fashion_mnist, to_unit_range

WEIGHTS_PATH = Path(__file__).resolve().parent / "assets" / "fmnist_classifier.pt"


class ClassifierError(Exception):
    """Missing or damaged classifier weights; the message says how to get them back."""


def _conv_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class Classifier(nn.Module):
    """Images (B, 1, 28, 28) in [-1, 1] -> logits (B, num_classes); ``features`` gives the penultimate layer.

    ``num_features`` is the width of that layer; torchmetrics reads it to size its FID and KID states.
    """

    def __init__(self, num_classes: int = len(CLASSES), width: int = 32, num_features: int = 128):
        super().__init__()
        self.num_features = num_features
        self.body = nn.Sequential(
            *_conv_block(1, width), nn.MaxPool2d(2),  # (B, w, 14, 14)
            *_conv_block(width, 2 * width), *_conv_block(2 * width, 2 * width), nn.MaxPool2d(2),  # (B, 2w, 7, 7)
            *_conv_block(2 * width, 4 * width), nn.MaxPool2d(2), nn.Flatten(),  # (B, 4w * 3 * 3)
            nn.Linear(4 * width * 9, num_features, bias=False), nn.BatchNorm1d(num_features), nn.ReLU(),  # (B, F)
        )
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(num_features, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (B, num_features), non-negative."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(x)))


# ---- Weights file ----------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where computed features of real images are kept: $GAN_METRICS_CACHE, else ~/.cache/fmnist-gan-metrics."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fmnist-gan-metrics"
    return Path(os.environ.get("GAN_METRICS_CACHE") or default)


def load_classifier(path: str | Path | None = None, device: torch.device | str = "cpu") -> Classifier:
    """The trained classifier in eval mode, from ``path`` (default: the committed weights)."""
    path = Path(path) if path else WEIGHTS_PATH
    retrain = "It ships in codebase/assets/: restore that file from the copy you were given."
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ClassifierError(f"no classifier weights at {path}. {retrain}") from None
    except Exception as e:
        raise ClassifierError(f"{path} is not a readable weights file ({type(e).__name__}). {retrain}") from None
    try:
        model = Classifier(**state["config"])
        model.load_state_dict(state["model"])
    except Exception as e:
        raise ClassifierError(f"{path} does not hold this project's classifier ({type(e).__name__}: {e}). "
                              f"{retrain}") from None
    model.test_accuracy = float(state.get("test_accuracy", float("nan")))
    return model.to(device).eval().requires_grad_(False)


# ---- Training --------------------------------------------------------------------------------------------------


def _augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror half of the images left to right (clothes look alike mirrored): (B, 1, 28, 28) -> same."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    """Fraction of uint8 images (N, 28, 28) that ``model`` (in eval mode) labels correctly."""
    correct = 0
    for i in range(0, len(images), batch_size):
        logits = model(to_unit_range(images[i:i + batch_size]))
        correct += int((logits.argmax(1) == labels[i:i + batch_size]).sum())
    return correct / len(images)


def train_classifier(epochs: int = 6, batch_size: int = 128, lr: float = 3e-3, seed: int = 0,
                     data_dir: str | None = None) -> dict:
    """Train on the train split; returns the weights-file dict, with the test accuracy measured at the end."""
    torch.manual_seed(seed)
    images, labels = load_fashion_mnist("train", data_dir)
    test_images, test_labels = load_fashion_mnist("test", data_dir)
    config = {"num_classes": len(CLASSES), "width": 32, "num_features": 128}
    model = Classifier(**config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = len(images) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(images), generator=gen)
        for i in tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", unit="step", leave=False):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            x = _augment(to_unit_range(images[idx]), gen)
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        print(f"epoch {epoch + 1}/{epochs}: test accuracy {accuracy(model, test_images, test_labels):.4f} "
              f"({time.perf_counter() - start:.0f} s)")
    test_accuracy = accuracy(model, test_images, test_labels)
    return {"model": model.state_dict(), "config": config, "test_accuracy": test_accuracy,
            "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                      "seconds": round(time.perf_counter() - start, 1)}}
