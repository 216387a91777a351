"""Sample quality in the feature space of the project's Fashion-MNIST classifier: FID, KID and class accuracy.

    python -m codebase.evaluate out_nonsaturating/ out_wasserstein_gp/    # one row per run
    python -m codebase.evaluate --calibrate                               # what the numbers of real and broken data are

FID and KID compare N generated images (default 10,000) with the 10,000 test images in the 128-d penultimate layer
of ``codebase/classifier.py`` (Inception needs a download and was made for 299x299 colour photos). torchmetrics
does the statistics; it receives features computed here, through a pass-through ``feature=`` module, so one
forward pass gives both the features and the logits behind class accuracy and class spread. Generated images are
rounded to 8 bits first, as if saved to PNG, so they are judged exactly like the real ones.

The test-set features are cached in ``$GAN_METRICS_CACHE`` (default ``~/.cache/fmnist-gan-metrics``), one file
per (classifier weights, test data) pair, named by a hash of both; a cache that cannot be written is skipped.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from codebase.checkpoint import load_checkpoint
from codebase.config import Config, TrainingError, build_models
from codebase.classifier import Classifier, ClassifierError, cache_dir, load_classifier
from codebase.data import CLASSES, DataError, load_fashion_mnist, to_unit_range

DEFAULT_N = 10_000  # generated samples per evaluation, as many as there are test images
EVAL_SEED = 0  # noise of the evaluated samples; independent of the run's own seed
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000


class MetricsError(Exception):
    """A run or file that cannot be evaluated; the message says what to do."""


class _PassThrough(nn.Module):
    """Features in, features out: torchmetrics accumulates features that ``embed`` computed."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


# ---- Features --------------------------------------------------------------------------------------------------


def quantize(x: Tensor) -> Tensor:
    """Round images in [-1, 1] to the 256 grey levels of a PNG (as ``to_unit_range`` of uint8 gives): same shape."""
    return x.clamp(-1, 1).add(1).mul(127.5).round().div(127.5).sub(1)


@torch.no_grad()
def embed(classifier: Classifier, x: Tensor, batch_size: int = 250) -> tuple[Tensor, Tensor]:
    """Penultimate features (N, F) in float64 and logits (N, K) of images x.

    Args:
        x: uint8 (N, 28, 28) in [0, 255], or float (N, 1, 28, 28) in [-1, 1].
    """
    device = next(classifier.parameters()).device
    features, logits = [], []
    for i in range(0, len(x), batch_size):
        batch = x[i:i + batch_size]
        batch = to_unit_range(batch) if batch.dtype == torch.uint8 else batch
        h = classifier.features(batch.to(device))  # (B, F)
        features.append(h.double().cpu())
        logits.append(classifier.head(h).cpu())
    return torch.cat(features), torch.cat(logits)


def fingerprint(classifier: nn.Module) -> str:
    """sha256 of the classifier's weights (hex): scores are comparable only under the same fingerprint."""
    digest = hashlib.sha256()
    for name, tensor in sorted(classifier.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def real_features(classifier: Classifier, data_dir: str | None = None, use_cache: bool = True) -> Tensor:
    """Features (N_test, F) of the test split, read from the cache when it holds them."""
    images, labels = load_fashion_mnist("test", data_dir)
    digest = hashlib.sha256(fingerprint(classifier).encode())
    digest.update(images.numpy().tobytes())
    digest.update(labels.numpy().tobytes())
    path = cache_dir() / f"test_features_{digest.hexdigest()[:16]}.pt"
    if use_cache and path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(cached, Tensor) and cached.shape == (len(images), classifier.num_features):
                return cached
        except Exception:  # a damaged cache file is recomputed and replaced
            pass
    features, _ = embed(classifier, images)
    if use_cache:
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(features, tmp)
            os.replace(tmp, path)
        except (OSError, RuntimeError):  # torch.save raises RuntimeError on a full disk: the cache is skipped
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    return features


# ---- Scores ----------------------------------------------------------------------------------------------------


def fid_kid(real: Tensor, fake: Tensor, kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE,
            seed: int = EVAL_SEED) -> dict:
    """FID and KID (mean and std over random subsets) between features real (N, F) and fake (M, F).

    KID's subsets are ``min(kid_subset_size, N, M)`` samples each, drawn from a generator seeded with ``seed``.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance  # here: importing torchmetrics takes seconds
    from torchmetrics.image.kid import KernelInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        raise MetricsError(f"FID needs at least 2 samples on each side, got {len(real)} real and {len(fake)} fake.")
    real, fake = real.double(), fake.double()  # float64 accumulation, for FID and for KID's cubic kernel
    fid = FrechetInceptionDistance(feature=_PassThrough(real.shape[1]))
    fid.update(real, real=True)
    fid.update(fake, real=False)
    with warnings.catch_warnings():  # KID warns that it keeps all features: here that is 2 x 10,000 x 128
        warnings.simplefilter("ignore")
        kid = KernelInceptionDistance(feature=_PassThrough(real.shape[1]), subsets=kid_subsets,
                                      subset_size=min(kid_subset_size, len(real), len(fake)))
    kid.update(real, real=True)
    kid.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):  # KID draws its subsets from the global RNG
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}


def class_report(logits: Tensor, y: Tensor | None = None) -> dict:
    """Where the classifier puts the samples, and how often it agrees with their labels.

    Args:
        logits: (N, K) classifier logits.
        y: (N,) the labels the samples were conditioned on (or the true labels of real images), or None.

    Returns:
        ``predicted_share`` (K fractions), ``class_spread`` = exp(entropy of that share), the effective number of
        classes: K for a balanced set, 1 when every sample lands in one class. With y, also ``class_accuracy``
        (fraction with argmax == y) and ``per_class_accuracy`` (K fractions, NaN for a class absent from y).
    """
    k = logits.shape[1]
    pred = logits.argmax(1)
    share = torch.bincount(pred, minlength=k).double() / len(pred)
    entropy = -(share[share > 0] * share[share > 0].log()).sum()
    report = {"predicted_share": share.tolist(), "class_spread": float(entropy.exp())}
    if y is not None:
        y = y.to(pred.device)
        correct = (pred == y).double()
        report["class_accuracy"] = float(correct.mean())
        report["per_class_accuracy"] = [float(correct[y == c].mean()) if (y == c).any() else math.nan
                                        for c in range(k)]
    return report


def evaluate_images(classifier: Classifier, real: Tensor, x: Tensor, y: Tensor | None = None, **kid_args) -> dict:
    """FID, KID and the class report of images x (uint8 (N, 28, 28) or float (N, 1, 28, 28)) against ``real``."""
    features, logits = embed(classifier, x)
    return {"n": len(x), **fid_kid(real, features, **kid_args), **class_report(logits, y)}


# ---- Generators and runs ---------------------------------------------------------------------------------------


@torch.no_grad()
def sample(g: nn.Module, n: int, seed: int = EVAL_SEED, batch_size: int = 1000) -> tuple[Tensor, Tensor | None]:
    """n images (n, 1, 28, 28) on the CPU, rounded to 8 bits, from fixed noise; labels y (n,) cycle through the
    classes for a conditional g (None otherwise). g is sampled in eval mode and left in the mode it was in."""
    device = next(g.parameters()).device
    z = torch.randn(n, g.dim_z, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(n) % g.num_classes if g.num_classes else None
    was_training = g.training
    g.eval()
    x = [g(z[i:i + batch_size].to(device), None if y is None else y[i:i + batch_size].to(device)).cpu()
         for i in range(0, n, batch_size)]
    g.train(was_training)
    return quantize(torch.cat(x)), y


def evaluate_generator(g: nn.Module, classifier: Classifier, real: Tensor, n: int = DEFAULT_N,
                       seed: int = EVAL_SEED) -> dict:
    """Scores of n samples of g; class accuracy only when g is conditional."""
    x, y = sample(g, n, seed)
    return {**evaluate_images(classifier, real, x, y), "seed": seed}


def load_generator(run_dir: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """The trained generator of a run folder (its moving average when the run kept one, as the grids show) and
    its checkpoint's (config, step)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MetricsError(f"{run_dir} is not a folder. Pass the output folder of a run, such as out_nonsaturating/.")
    try:
        state = load_checkpoint(run_dir / "checkpoint.pt")
    except TrainingError as e:
        raise MetricsError(str(e)) from None
    try:
        g, _ = build_models(Config(**state["config"]), torch.device(device))
        g.load_state_dict(state.get("g_ema", state["g"]))
    except Exception as e:
        raise MetricsError(f"{run_dir}/checkpoint.pt does not fit the current networks ({type(e).__name__}); it "
                           f"was saved by another version of the code. Train it again.") from None
    return g, {"config": state["config"], "step": state["step"]}


def evaluate_run(run_dir: str | Path, classifier: Classifier, real: Tensor, n: int = DEFAULT_N,
                 seed: int = EVAL_SEED) -> dict:
    """Scores of the generator saved in ``run_dir/checkpoint.pt``, with its step, loss type and conditioning."""
    g, info = load_generator(run_dir, next(classifier.parameters()).device)
    cfg = info["config"]
    return {"step": info["step"], "loss_type": cfg.get("loss_type"), "conditional": bool(cfg.get("conditional")),
            **evaluate_generator(g, classifier, real, n, seed)}


def reference_sets(data_dir: str | None = None, n: int = DEFAULT_N, seed: int = EVAL_SEED) -> dict:
    """Image sets of known quality that calibrate the scores: name -> (x (n, 1, 28, 28) in [-1, 1], labels or None).

    Train images are the floor (the best a generator can hope for); Gaussian noise and a constant image are
    ceilings; blur and dropped classes are degradations in between. Sets smaller than n are drawn with replacement.
    """
    from torchvision.transforms.functional import gaussian_blur  # here: importing torchvision takes seconds

    images, labels = load_fashion_mnist("train", data_dir)
    gen = torch.Generator().manual_seed(seed)

    def draw(pool: Tensor) -> tuple[Tensor, Tensor]:
        pick = (pool[torch.randperm(len(pool), generator=gen)[:n]] if len(pool) >= n
                else pool[torch.randint(len(pool), (n,), generator=gen)])
        return to_unit_range(images[pick]), labels[pick]

    x, y = draw(torch.arange(len(images)))
    sets = {"train split (floor)": (x, y)}
    for sigma in (0.5, 1.0, 1.5, 2.0):
        sets[f"train, blur sigma={sigma}"] = (quantize(gaussian_blur(x, 2 * math.ceil(3 * sigma) + 1, sigma)), y)
    sets["train, 5 classes (0-4)"] = draw(torch.nonzero(labels < 5).flatten())
    sets[f"train, 1 class ({CLASSES[1]})"] = draw(torch.nonzero(labels == 1).flatten())
    sets["Gaussian noise, std 0.5"] = (quantize(0.5 * torch.randn(n, 1, 28, 28, generator=gen)), None)
    sets["constant grey image"] = (torch.zeros(n, 1, 28, 28), None)
    sets["constant black image"] = (torch.full((n, 1, 28, 28), -1.0), None)
    return sets


def write_metrics(out_dir: str | Path, g: nn.Module, device: torch.device | str = "cpu",
                  data_dir: str | None = None, n: int | None = None) -> dict | None:
    """Evaluate g and write ``out_dir/metrics.json``; the end of ``train()``. Prints a note and returns None
    instead of failing when the classifier or the test split is unavailable: the run itself is already saved."""
    start = time.perf_counter()
    try:
        classifier = load_classifier(device=device)
        result = evaluate_generator(g, classifier, real_features(classifier, data_dir), n or DEFAULT_N)
    except (ClassifierError, DataError, MetricsError) as e:
        print(f"metrics.json not written: {e}")
        return None
    result.update(classifier=fingerprint(classifier)[:16], seconds=round(time.perf_counter() - start, 1))
    path = Path(out_dir) / "metrics.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{path}: {summary_line(result)} ({result['seconds']:.0f} s; skip with --no_metrics)")
    return result


def summary_line(result: dict) -> str:
    """One line such as ``FID 12.3  KID 0.0123  class accuracy 91.0%`` (or ``class spread 9.7``)."""
    line = f"FID {result['fid']:.2f}  KID {result['kid']:.4f}"
    if "class_accuracy" in result:
        return line + f"  class accuracy {100 * result['class_accuracy']:.1f}%"
    return line + f"  class spread {result['class_spread']:.2f} of {len(CLASSES)}"
