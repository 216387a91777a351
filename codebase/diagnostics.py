"""Signs that a loss function is broken: read from the losses while training, from metrics.json at the end, and
from an autograd error raised by the losses' gradients.

A correct implementation never raises the warnings (three seeds per GAN, default settings). They warn, in one line
that names what to check; they never stop a run.

* While training: the median of each loss over the last WINDOW steps is compared with the range correct runs stay
  in (LIMITS).
* At the end of a one-epoch run with the default settings: FID (and, conditionally, class accuracy) is compared
  with what the reference implementation reaches (REFERENCE, measured over three seeds); a conditional run also
  names the classes its grid's columns do not show.
* When the gradient of a loss fails, ``where_in_gan`` runs the loss again, watching its in-place operations and
  with autograd's anomaly detection, to name the lines of gan.py involved.
"""
from __future__ import annotations

import re
import statistics
import sys
import warnings
from collections import deque
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

WINDOW = 50  # steps whose median loss is judged: single steps of a healthy GAN jump about
# Medians over WINDOW steps that correct runs never left (three seeds each, all 937 steps of one epoch): a WGAN-GP
# critic's loss stays within +-10; a non-saturating D's loss above 0.7 and G's below 3.
LIMITS = {
    "wasserstein_gp": lambda d, g: (
        f"the critic's loss (median {d:.3g} over the last {WINDOW} steps) is far beyond the +-10 that correct "
        "runs stay within: check the gradient penalty (that it reaches D's parameters, and lambda = 10) and the signs "
        "of the Wasserstein terms" if abs(d) > 50 else
        f"G's loss (median {g:.3g} over the last {WINDOW} steps) is far beyond the +-20 that correct runs stay within: "
        "check the signs of d_loss and g_loss" if abs(g) > 100 else None),
    "nonsaturating": lambda d, g: (
        f"D wins outright: its loss (median {d:.3g}) fell near 0 while G's (median {g:.3g}) climbs; correct runs keep "
        "d_loss above 0.7. Check that d_loss scores real images as real and fakes as fake, and that g_loss trains "
        "G (x_fake not detached there)" if d < 0.1 and g > 4 else None),
}
LIMITS["conditional"] = LIMITS["minimax"] = LIMITS["nonsaturating"]
# The reference implementation after one epoch with the default settings, seeds 0-2: (FID low, high), (class
# accuracy % low, high)
REFERENCE = {"nonsaturating": ((14.30, 14.89), None), "wasserstein_gp": ((13.37, 14.23), None),
             "conditional": ((6.08, 6.89), (88.9, 90.0))}
FAR = 1.3  # a FID this many times the reference's worst seed is far outside it
# A class whose conditioned samples the classifier recognises less often than this: its column of the grid does not
# show it. The reference's weakest class after one epoch, seed 0: 73.2% (class 6, shirts); the others 76-100%.
LOW_CLASS = 0.25
CLASS_NAMES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")


def kind(loss_type: str, conditional: bool) -> str:
    return "conditional" if conditional else loss_type


class Monitor:
    """Feed it each step's losses; it returns a warning (once per kind) when their recent medians leave the range
    correct runs stay in."""

    def __init__(self, gan: str):
        self.rule = LIMITS.get(gan)
        self.d, self.g = deque(maxlen=WINDOW), deque(maxlen=WINDOW)
        self.said: set[str] = set()
        self.warnings: list[str] = []  # every warning given, in order

    def feed(self, d_loss: float, g_loss: float) -> str | None:
        self.d.append(d_loss)
        self.g.append(g_loss)
        if self.rule is None or len(self.d) < WINDOW:
            return None
        warning = self.rule(statistics.median(self.d), statistics.median(self.g))
        if warning is None or warning.split(" (")[0] in self.said:
            return None
        self.said.add(warning.split(" (")[0])
        self.warnings.append(warning)
        return warning


def verdict(gan: str, metrics: dict, default_settings: bool, warned: list[str] = ()) -> str | None:
    """A plain sentence when a finished one-epoch run with the default settings is far from the reference: what the
    run itself shows (the classes its grid's columns miss, the warnings given while training) and what to look at."""
    if gan not in REFERENCE or not default_settings:
        return None
    per_class = metrics.get("per_class_accuracy")
    if gan == "conditional" and isinstance(per_class, list) and len(per_class) == len(CLASS_NAMES):
        low = [c for c, a in enumerate(per_class) if isinstance(a, (int, float)) and a < LOW_CLASS]
        if low:
            shown = "; ".join(f"{100 * per_class[c]:.1f}% of the samples drawn for class {c} ({CLASS_NAMES[c]}) are "
                              "classified as it" for c in low)
            return (f"the grid's column{'s' if len(low) > 1 else ''} {', '.join(map(str, low))} "
                    f"{'do' if len(low) > 1 else 'does'} not show {'their classes' if len(low) > 1 else 'its class'}: "
                    f"only {shown}, where the reference's weakest class reaches 73%. Look at the "
                    "labels your conditional loss gives the fakes: the handout's p(y) covers every class 0..9, and D "
                    "scores each fake under the label G drew it with")
    (low, high), accuracy = REFERENCE[gan]
    fid = metrics.get("fid")
    problems = []
    if isinstance(fid, (int, float)) and fid > FAR * high:
        problems.append(f"FID {fid:.1f}, where the reference implementation reaches {low:.1f}-{high:.1f}")
    acc = metrics.get("class_accuracy")
    if accuracy and isinstance(acc, (int, float)) and 100 * acc < accuracy[0] - 10:
        problems.append(f"class accuracy {100 * acc:.1f}%, where the reference reaches {accuracy[0]:.1f}-"
                        f"{accuracy[1]:.1f}%")
    if not problems:
        return None
    shown = (f"; while training it warned: {warned[0].split(':')[0]}" if warned else
             "; look at the latest grid (latest_x3.png) and at losses.png")
    return ("this run is far from what a correct loss gives after one epoch with these settings (" +
            "; ".join(problems) + ")" + shown + ". Check your loss function (python -m pytest -q tests/test_losses.py) "
            "before training longer")


# ---- Autograd errors, traced back to gan.py ---------------------------------------------------------------------

INPLACE = "modified by an inplace operation"  # in the message of autograd's error
_TORCH = Path(torch.__file__).parent


class _InPlace(TorchFunctionMode):
    """Records the gan.py line of every in-place tensor operation (a method ending in ``_``, or ``x[...] = ...``)."""

    def __init__(self, filename: str):
        super().__init__()
        self.filename, self.lines = filename, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if (name.endswith("_") and not name.startswith("_") and name != "requires_grad_") or name == "__setitem__":
            frame = sys._getframe(1)  # the code that made the operation, past torch's own Python functions
            while frame is not None and Path(frame.f_code.co_filename).is_relative_to(_TORCH):
                frame = frame.f_back
            if frame is not None and Path(frame.f_code.co_filename).name == self.filename and \
                    frame.f_lineno not in self.lines:
                self.lines.append(frame.f_lineno)
        return func(*args, **(kwargs or {}))


def first_sentence(error: BaseException, limit: int = 300) -> str:
    """The error's message without torch's hint, cut at a word within ``limit`` characters."""
    text = str(error).split(" Hint:")[0].strip().splitlines()[0].rstrip(".") if str(error).strip() else \
        type(error).__name__
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def inplace_lines(run, filename: str = "gan.py") -> list[int]:
    """The lines of ``filename`` that make in-place tensor operations when ``run()`` is called (once, here)."""
    tracer = _InPlace(filename)
    with tracer:
        run()
    return tracer.lines


INPLACE_SENTENCE = ("An in-place operation (a method ending in _, or x[...] = ...) changes every tensor that shares "
                    "its memory, and .detach() shares memory with the tensor it detaches: build a new tensor instead")


def where_in_gan(run, error: RuntimeError, filename: str = "gan.py") -> str | None:
    """A sentence naming the lines of ``filename`` behind ``error``, an autograd error raised by the gradient of
    what ``run()`` returns; ``run`` is called again (once), recording its in-place operations, under anomaly
    detection. None when no line of ``filename`` is involved."""
    tracer = _InPlace(filename)
    forward: list[int] = []
    with warnings.catch_warnings(record=True) as caught, torch.autograd.detect_anomaly(check_nan=False):
        warnings.simplefilter("always")
        try:
            with tracer:
                returned = run()
            losses = [v for v in (returned if isinstance(returned, tuple) else (returned,))
                      if isinstance(v, torch.Tensor) and v.requires_grad]
            for loss in losses:
                torch.autograd.grad(loss.sum(), [t for t in _leaves(loss)], allow_unused=True, retain_graph=True)
        except Exception:  # noqa: BLE001 - whatever the second run raises, the first error is the one reported
            pass
    for warning in caught:  # anomaly detection: the traceback of the forward operation whose backward failed
        forward += [int(n) for n in re.findall(rf'{re.escape(filename)}", line (\d+)', str(warning.message))]
    lines = tracer.lines if INPLACE in str(error) else []
    if lines:
        return (f"{filename} line {', '.join(map(str, lines))} changes a tensor in place that autograd needs for "
                "the gradient" + (f" (the tensor comes from line {forward[-1]})" if forward else "") + ". " +
                INPLACE_SENTENCE)
    if forward:
        return f"the failing gradient goes through {filename} line {forward[-1]}"
    return None


def _leaves(loss: torch.Tensor) -> list[torch.Tensor]:
    """The leaf tensors that ``loss`` depends on (the networks' parameters among them)."""
    found, seen, todo = [], set(), [loss.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):
            found.append(node.variable)
        todo += [next_node for next_node, _ in node.next_functions]
    return found
