"""Signs that a loss function is broken: read from the losses while training, and from metrics.json at the end.

A correct implementation never raises them (three seeds per GAN, default settings); the catalogued mistakes they
catch are listed in the README, measured by ``bench/diagnostics.py``. They warn, in one line that names what to
check; they never stop a run.

* While training: the median of each loss over the last WINDOW steps is compared with the range correct runs stay
  in (LIMITS).
* At the end of a one-epoch run with the default settings: FID (and, conditionally, class accuracy) is compared
  with what the reference implementation reaches (REFERENCE, the README's three-seed table).
"""
from __future__ import annotations

import statistics
from collections import deque

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
# One epoch, default settings, seeds 0-2 (README, "Results after one epoch"): (FID low, high), (class acc % low, high)
REFERENCE = {"nonsaturating": ((14.30, 14.89), None), "wasserstein_gp": ((13.37, 14.23), None),
             "conditional": ((6.08, 6.89), (88.9, 90.0))}
FAR = 1.3  # a FID this many times the reference's worst seed is far outside it


def kind(loss_type: str, conditional: bool) -> str:
    return "conditional" if conditional else loss_type


class Monitor:
    """Feed it each step's losses; it returns a warning (once per kind) when their recent medians leave the range
    correct runs stay in."""

    def __init__(self, gan: str):
        self.rule = LIMITS.get(gan)
        self.d, self.g = deque(maxlen=WINDOW), deque(maxlen=WINDOW)
        self.said: set[str] = set()

    def feed(self, d_loss: float, g_loss: float) -> str | None:
        self.d.append(d_loss)
        self.g.append(g_loss)
        if self.rule is None or len(self.d) < WINDOW:
            return None
        warning = self.rule(statistics.median(self.d), statistics.median(self.g))
        if warning is None or warning.split(" (")[0] in self.said:
            return None
        self.said.add(warning.split(" (")[0])
        return warning


def verdict(gan: str, metrics: dict, default_settings: bool) -> str | None:
    """A plain sentence when a finished one-epoch run with the default settings is far from the reference."""
    if gan not in REFERENCE or not default_settings:
        return None
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
    return ("this run is far from what a correct loss gives after one epoch with these settings (" +
            "; ".join(problems) + "): check your loss function (python -m pytest -q tests/test_losses.py) before "
            "training longer")
