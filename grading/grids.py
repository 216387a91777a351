"""The sample grids judged automatically, by the project's Fashion-MNIST classifier (codebase/classifier.py).

A grid is cut into its 100 images (the 10x10 layout ``save_grid_image`` writes: 302x302 pixels, 28x28 images with
2-pixel gaps) and scored:

- ``realism``: the fraction of the 100 images that lie among real clothing in the classifier's feature space
  (inside the ball around one of the 10,000 test images that reaches its 3rd-nearest neighbour among them: the
  "precision" of Kynkaeaenniemi et al., 2019);
- ``classes``: how many classes the images spread over (exp of the entropy of the predicted classes, 1 to 10);
- ``accuracy`` (3.2): the fraction of images classified as their column's class (column c is drawn for class c);
- ``copies``: the images within COPY_DISTANCE (root-mean-square pixel distance, pixels in [0, 1]) of a training or
  test image or its mirror image: a grid of real images rather than samples, for a human to look at.

The bounds of a healthy grid (HEALTHY) are below every one-epoch reference grid measured (docs/grading.md shows
the calibration, bench/grids.py measures it). Scores need the classifier's weights and Fashion-MNIST on the grading
machine (grading/grid_data.py finds it, without torch); without them ``GridsUnavailable`` says what is missing.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from codebase.classifier import WEIGHTS_PATH, ClassifierError, cache_dir, load_classifier
from codebase.data import CLASSES, DataError, load_fashion_mnist, to_unit_range
from grading import grid_data
from grading.grid_data import GridsUnavailable

SIDE, GAP, ROWS = 28, 2, 10
PIXELS = ROWS * (SIDE + GAP) + GAP  # 302
COPY_DISTANCE = 0.03  # the closest one-epoch sample to a real image measured was 0.063 away; copies are 0
NEIGHBOURS = 3  # realism: the radius around each real image reaches its 3rd-nearest real neighbour
HEALTHY = {"realism": 0.45, "classes": 6.0, "accuracy": 0.50}  # lower bounds; one-epoch reference grids: 0.55+, 9+, 0.87+


class GridError(ValueError):
    """A grid that is not in the run scripts' 10x10 layout."""


def cut(data: bytes) -> torch.Tensor:
    """The 100 images (uint8, (100, 28, 28), row by row) of a PNG grid in the run scripts' layout."""
    with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
        if image.size != (PIXELS, PIXELS):
            raise GridError(f"{image.size[0]}x{image.size[1]} pixels, not the {PIXELS}x{PIXELS} grid of 10x10 "
                            "samples the run scripts save")
        pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    starts = [GAP + (SIDE + GAP) * i for i in range(ROWS)]
    return torch.from_numpy(np.stack([pixels[r:r + SIDE, c:c + SIDE] for r in starts for c in starts]))


@lru_cache(maxsize=1)
def reference_data() -> dict:
    """The classifier, every real image (train and test, uint8) and the real neighbourhoods, cached on disk."""
    try:
        classifier = load_classifier()
    except ClassifierError as error:
        raise GridsUnavailable(str(error)) from None
    reals, problems = None, []
    for folder in grid_data.folders():
        try:
            reals = [load_fashion_mnist(split, folder, download=False) for split in ("train", "test")]
            break
        except DataError as error:  # damaged: the next folder, if any
            problems.append(str(error).replace("--data_dir ", "")[:200])
    if reals is None:
        raise grid_data.unavailable(problems)
    (train, _), (test, _) = reals
    digest = hashlib.sha256(WEIGHTS_PATH.read_bytes() + test.numpy().tobytes())
    path = cache_dir() / f"grid_reference_{digest.hexdigest()[:16]}.pt"
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
        features, radii = cached["features"], cached["radii"]
    except Exception:  # noqa: BLE001 - absent or damaged: computed again
        with torch.no_grad():
            features = torch.cat([classifier.features(to_unit_range(test[i:i + 200]))
                                  for i in range(0, len(test), 200)])
        radii = torch.cat([torch.cdist(features[i:i + 1000], features).kthvalue(NEIGHBOURS + 1, dim=1).values
                           for i in range(0, len(features), 1000)])  # the nearest is itself; by rows, in 40 MB
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"features": features, "radii": radii}, tmp)
            os.replace(tmp, path)
        except (OSError, RuntimeError):  # a cache that cannot be written (full, read-only) is skipped
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    reals = torch.cat([train, test])
    return {"classifier": classifier, "reals": reals, "means": block_means(reals), "features": features,
            "radii": radii}


def prepare() -> None:
    """Load (and cache) what the checks need, so that the first grading does not pay for it; raises
    GridsUnavailable."""
    reference_data()


def block_means(images: torch.Tensor) -> torch.Tensor:
    """Images (N, 28, 28) uint8 as their 49 sums of 4x4 pixel blocks divided by 4, in float64: (N, 49). An
    orthonormal map (each block's 16 weights of 1/4), so the distance between two images' block means is never more
    than the distance between the images."""
    sums = [part.reshape(-1, 7, 4, 7, 4).float().sum((2, 4)) for part in images.split(8192)]  # exact: at most 4080
    return torch.cat(sums).flatten(1).double() / 4 if sums else torch.zeros(0, 49, dtype=torch.float64)


def copies(images: torch.Tensor, reals: torch.Tensor, distance: float, means: torch.Tensor | None = None,
           chunk: int = 8192) -> torch.Tensor:
    """Which images (N, 28, 28) uint8 lie closer than ``distance`` (root-mean-square pixel distance, pixels in
    [0, 1]) to one of ``reals`` (M, 28, 28) uint8 or its mirror image: (N,) bool. ``means``: block_means(reals),
    if already computed.

    Exact: a pair is measured in full (sums of products of integer pixels, at most 784 * 255**2, which float64 holds
    without rounding: a copy is at 0) wherever their block means (a lower bound of the distance) are close enough;
    the block means of every pair take one product of 49 numbers each, so only those few pairs cost 784."""
    limit = (distance * 255 * SIDE) ** 2  # the squared distance in pixel values: 784 pixels, 0-255 each
    queries = torch.cat([images, images.flip(-1)])  # mirroring the query mirrors the real
    q = block_means(queries)
    r = block_means(reals) if means is None else means
    q2 = (q * q).sum(1, keepdim=True)
    near = torch.zeros(len(queries), dtype=torch.bool)
    for i in range(0, len(r), chunk):
        rows = r[i:i + chunk]
        r2 = (rows * rows).sum(1)
        bound = q2 + r2 - 2 * q @ rows.T  # float64: rounding far below the margin
        pairs = torch.nonzero(bound <= limit + 1e-6 * (q2 + r2) + 1e-6)
        for j in range(0, len(pairs), 2048):
            qi, ri = pairs[j:j + 2048].T
            d2 = (queries[qi].flatten(1).double() - reals[i + ri].flatten(1).double()).pow(2).sum(1)
            near[qi[d2 < limit]] = True
    return near[:len(images)] | near[len(images):]


def judge(data: bytes, conditional: bool) -> dict:
    """The scores of one PNG grid: realism, classes, copies (and accuracy, per column too, when
    ``conditional``), and ``healthy``: whether they all reach HEALTHY. Raises GridError, GridsUnavailable."""
    images = cut(data)
    ref = reference_data()
    with torch.no_grad():
        h = ref["classifier"].features(to_unit_range(images))
        predicted = ref["classifier"].head(h).argmax(1)
    realism = (torch.cdist(h, ref["features"]) <= ref["radii"]).any(1).double().mean().item()
    shares = torch.bincount(predicted, minlength=len(CLASSES)).double() / len(predicted)
    shares = shares[shares > 0]
    scores = {"realism": round(realism, 3), "classes": round(math.exp(-(shares * shares.log()).sum().item()), 2),
              "copies": int(copies(images, ref["reals"], COPY_DISTANCE, ref["means"]).sum())}
    if conditional:
        hits = (predicted == torch.arange(ROWS).repeat(ROWS)).view(ROWS, ROWS).double()  # [row, column]
        scores["columns"] = [round(v, 2) for v in hits.mean(0).tolist()]
        scores["accuracy"] = round(hits.mean().item(), 3)
    scores["healthy"] = all(scores[k] >= low for k, low in HEALTHY.items() if k in scores)
    return scores


def describe(scores: dict) -> str:
    """One line for the student and the TA."""
    parts = [f"{scores['realism']:.0%} of the samples look like real clothing to the classifier",
             f"they spread over {scores['classes']:.1f} of 10 classes"]
    if "accuracy" in scores:
        parts.append(f"{scores['accuracy']:.0%} show their column's class")
    low = {"realism": f"{HEALTHY['realism']:.0%}", "classes": f"{HEALTHY['classes']:g}",
           "accuracy": f"{HEALTHY['accuracy']:.0%}"}
    bounds = ", ".join(f"{k} {v}" for k, v in low.items() if k in scores)
    verdict = "healthy" if scores["healthy"] else "below what a healthy one-epoch grid reaches"
    return f"{'; '.join(parts)}: {verdict} (at least: {bounds})"
