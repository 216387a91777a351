"""Checks of the grading suite: expected values, computed here, against the outputs of probes.run.

Each handout problem is worth its handout points (1.2: 10, 3.2: 10, 4.5: 15), split over checks. A check takes
``probes.run(module, problem)`` -- plain tensors, possibly returned by an untrusted child process, so every
access validates types and shapes first -- rebuilds the same probe networks, computes what a correct solution
returns, and raises AssertionError with a message for the student when the outputs differ. Comparisons are
two-sided (torch.testing.assert_close's test); the formulas are written out here, independently of codebase/gan.py.

A failed check's message comes at the course's hint level (HINTS, chosen when the autograder is built): ``none``
says what the check saw, ``handout`` (the default) also what it means in the handout's terms, ``full`` also how to
write it. With unlimited resubmissions, only ``full`` spells out code.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from grading.child import probes
from grading.status import HELD_BACK
from grading.child.probes import BATCH, DIM_Z, NUM_CLASSES, SAMPLING_BATCH
from grading.child.problems import CHECKS, FUNCTIONS

GP_LAMBDA = 10.0
RTOL, ATOL = 1e-4, 1e-5
HINTS = ("none", "handout", "full")


class Failure(AssertionError):
    """A failed check: what it saw, what that means in the handout's terms, and how to write it."""

    def __init__(self, seen: str, handout: str = "", full: str = ""):
        super().__init__(f"{seen}: {handout}" if handout else seen)
        self.seen, self.handout, self.full = seen, handout, full or handout

    def at(self, hints: str) -> str:
        more = {"none": "", "handout": self.handout, "full": self.full}[hints]
        return f"{self.seen}: {more}" if more else self.seen

    def prefixed(self, prefix: str) -> "Failure":
        return Failure(prefix + self.seen, self.handout, self.full)


def _hint(handout: str, full: str = "") -> tuple[str, str]:
    """A hint at the two levels that give one: the handout's terms, and how to write it (default: the same)."""
    return handout, full or handout


NO_HINT = ("", "")


@dataclass(frozen=True)
class Check:
    name: str
    points: float
    run: Callable[[dict], None]  # raises AssertionError with the student's message

    @property
    def slug(self) -> str:
        return re.sub(r"\W+", "_", self.name).strip("_")


@dataclass(frozen=True)
class Problem:
    number: str
    function: str
    checks: tuple[Check, ...]

    @property
    def points(self) -> float:
        return sum(check.points for check in self.checks)


def evaluate(problem: str, outputs, hints: str = "handout") -> list[tuple[Check, str | None]]:
    """Each check of ``problem`` with None if it passed, else the message saying why it failed, at the hint level
    ``hints``. The checks that read the probes' records of how the function drew z, labels and alpha (records its
    code could forge) pass only when both loss values are right too. When the function returns its two losses in
    the wrong order, that is the one message of every check that depends on them."""
    if hints not in HINTS:
        raise ValueError(f"hints must be one of {', '.join(HINTS)}, got {hints!r}")
    results = []
    swapped = _swapped(problem, outputs)
    for check in PROBLEMS[problem].checks:
        try:
            if swapped and check.name not in RECORD_CHECKS:
                raise swapped
            check.run(outputs)
            results.append((check, None))
        except Failure as failure:
            results.append((check, failure.at(hints)))
        except AssertionError as failure:
            results.append((check, str(failure)))
        except Exception as error:  # noqa: BLE001 - outputs that are not what probes.run returns
            results.append((check, f"the grading process returned malformed outputs ({type(error).__name__})"))
    values = [message for check, message in results if check.name in VALUE_CHECKS]
    if any(values):
        results = [(check, _NEEDS_VALUES) if check.name in RECORD_CHECKS and message is None else (check, message)
                   for check, message in results]
    return results


# ---- Reading outputs that may come from an untrusted process ---------------------------------------------------


def _text(value, limit: int = 600) -> str:
    return (value if isinstance(value, str) else repr(type(value)))[:limit]


def _probe(outputs, problem: str, name: str) -> dict:
    if not isinstance(outputs, dict):
        raise TypeError("outputs must be a dict")
    if "error" in outputs:
        raise Failure(_text(outputs["error"]))
    probe = outputs[name]
    if not isinstance(probe, dict):
        raise TypeError("a probe's outputs must be a dict")
    if "error" in probe:
        raise Failure(f"{FUNCTIONS[problem]}: {_text(probe['error'])}" if probe.get("returned") is True
                      else f"{FUNCTIONS[problem]} raised {_text(probe['error'])}")
    return probe


def _tensor(value, shape: tuple[int, ...], what: str, integer: bool = False) -> Tensor:
    ok = isinstance(value, Tensor) and value.layout == torch.strided and tuple(value.shape) == shape
    if not ok or value.is_floating_point() == integer or value.is_complex():
        raise Failure(f"{what} is {probes._kind(value)}",
                      f"it must be {'an integer' if integer else 'a float'} tensor of shape {shape}")
    return value.detach().clone() if integer else value.detach().float()


def _tensors(value, like: list[Tensor], what: str) -> list[Tensor]:
    if not isinstance(value, list) or len(value) != len(like):
        raise TypeError(f"{what} must be a list of {len(like)} tensors")
    return [_tensor(v, tuple(t.shape), what) for v, t in zip(value, like)]


def _calls(probe: dict, key: str) -> list:
    calls = probe[key]
    if not isinstance(calls, list) or len(calls) > probes.MAX_CALLS:
        raise TypeError(f"{key} must be a list of at most {probes.MAX_CALLS} entries")
    return calls


# ---- Comparisons with messages ---------------------------------------------------------------------------------


_NOT_FINITE = _hint("it is not finite: log(sigmoid(h)) is -inf once sigmoid(h) rounds to 0; compute log D and "
                    "log(1 - D) from the logits, not from probabilities",
                    "it is not finite: compute losses from the logits (F.softplus, F.logsigmoid or "
                    "F.binary_cross_entropy_with_logits), never log(sigmoid(h))")
_SUMMED = _hint("it is B times too large: each E[...] is an average over the batch, not a sum",
                "it is B times too large: average over the batch rather than summing")


def _matches(actual: Tensor, expected: Tensor) -> bool:
    """torch.testing.assert_close's test (same shape and dtype, |actual - expected| <= ATOL + RTOL |expected|, NaN
    never close) without its cost: its first call imports torch.distributed, most of a second per grading."""
    return actual.shape == expected.shape and actual.dtype == expected.dtype and \
        torch.allclose(actual, expected, rtol=RTOL, atol=ATOL)


def _close(actual: Tensor, expected: Tensor, what: str, hint: tuple[str, str] = NO_HINT,
           mistakes: list[tuple[Tensor, tuple[str, str]]] = ()) -> None:
    if not _matches(actual, expected):
        known = [h for value, h in mistakes if torch.allclose(actual, value, rtol=1e-3, atol=1e-4)]
        if known:
            hint = known[0]
        elif not torch.isfinite(actual).all():
            hint = _NOT_FINITE
        elif actual.numel() == 1 and torch.isclose(actual, expected * BATCH, rtol=1e-3):
            hint = _SUMMED
        shown = f"{actual.item():.6g}, expected {expected.item():.6g}" if actual.numel() == 1 else "differs"
        raise Failure(f"{what} = {shown}", *hint) from None


def _close_grads(actual: list[Tensor], expected: tuple[Tensor, ...], what: str, net: str,
                 hint: tuple[str, str], wrong: tuple[str, str] = NO_HINT) -> None:
    if all(not a.any() for a in actual):
        raise Failure(f"{what} sends no gradient to {net}'s parameters", *hint)
    if not all(torch.isfinite(a).all() for a in actual):
        raise Failure(f"{what}'s gradient w.r.t. {net}'s parameters is not finite", *_NOT_FINITE)
    for a, e in zip(actual, expected):
        if not _matches(a, e):
            error = (a - e).abs().max().item()
            raise Failure(f"{what}'s gradient w.r.t. {net}'s parameters is wrong (largest error {error:.3g}, "
                          f"expected values up to {e.abs().max().item():.3g})", *wrong) from None


# ---- Expected values -------------------------------------------------------------------------------------------


class Expected:
    """A correct solution's losses on a probe and their gradients w.r.t. D's and G's parameters."""

    def __init__(self, d_loss: Tensor, g_loss: Tensor, d_params, g_params, d_loss_without_penalty=None,
                 mistakes: tuple[tuple[str, Tensor, str], ...] = ()):
        self.d_loss, self.g_loss = d_loss.detach(), g_loss.detach()
        self.mistakes = [(loss, value.detach(), hint) for loss, value, hint in mistakes]  # known wrong values
        self.d_grads = torch.autograd.grad(d_loss, d_params, retain_graph=True)
        self.g_grads = torch.autograd.grad(g_loss, g_params)
        self.wasserstein = None
        if d_loss_without_penalty is not None:  # 4.5: to tell a missing penalty gradient from other errors
            self.wasserstein = d_loss_without_penalty.detach()
            self.wasserstein_grads = torch.autograd.grad(d_loss_without_penalty, d_params)


@functools.lru_cache(maxsize=None)
def _nonsaturating(problem: str, name: str) -> Expected:
    """L_D = -E[log D(x_real)] - E[log(1 - D(x_fake))],  L_G = -E[log D(x_fake)], on logits h."""
    p = probes.build(problem, name)
    x_fake = p.g(torch.zeros(len(p.x_real), DIM_Z), p.y_real)  # G ignores z; fakes carry the labels they get
    h_real, h_fake_d, h_fake_g = p.d(p.x_real, p.y_real), p.d(x_fake.detach(), p.y_real), p.d(x_fake, p.y_real)
    d_loss = F.softplus(-h_real).mean() + F.softplus(h_fake_d).mean()  # -log sig(h_real) - log(1 - sig(h_fake))
    g_loss = F.softplus(-h_fake_g).mean()  # -log sig(h_fake)
    mistakes = (("g_loss", -F.softplus(h_fake_g).mean(), _hint("this is the minimax loss E[log(1 - D(G(z)))] of "
                 "1.1; the non-saturating G loss of 1.2 is -E[log D(G(z))]")),
                ("g_loss", F.softplus(h_fake_g).mean(), _hint("the sign is wrong: this is -E[log(1 - D(G(z)))]; the "
                 "non-saturating G loss is -E[log D(G(z))]")),
                ("d_loss", F.softplus(h_real).mean() + F.softplus(-h_fake_d).mean(), _hint("real and fake are "
                 "swapped: D should call real images real (-log D(x)) and fakes fake (-log(1 - D(G(z))))")))
    return Expected(d_loss, g_loss, list(p.d.parameters()), list(p.g.parameters()), mistakes=mistakes)


def _wasserstein_gp(name: str, alpha: Tensor) -> Expected:
    """L_D = E[D(x_fake)] - E[D(x_real)] + 10 E[(||grad D(x_hat)||_2 - 1)^2],  L_G = -E[D(x_fake)]."""
    p = probes.build("4.5", name)
    x_fake = p.g(torch.zeros(len(p.x_real), DIM_Z))
    a = alpha.view(-1, 1, 1, 1)
    x_hat = (a * p.x_real + (1 - a) * x_fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(p.d(x_hat).sum(), x_hat, create_graph=True)  # (B, 1, 28, 28)
    penalty = (grad.flatten(1).norm(dim=1) - 1).square().mean()
    wasserstein = p.d(x_fake.detach()).mean() - p.d(p.x_real).mean()
    g_loss = -p.d(x_fake).mean()
    norms = grad.flatten(1).norm(dim=1)  # (B,)
    wrong_penalties = (  # the penalty as the catalogued mistakes compute it, each with what to look at
        (-wasserstein + GP_LAMBDA * penalty, _hint("the Wasserstein terms are swapped: the critic's loss is "
         "E[D(G(z))] - E[D(x)] (+ the penalty)")),
        (wasserstein + penalty, _hint("the penalty is weighted by 1: the handout's lambda is 10")),
        (wasserstein + GP_LAMBDA * (grad.norm(dim=1) - 1).square().mean(), _hint(
            "the gradient's norm is taken over the channel dimension only: ||grad D(x_hat)||_2 is one L2 norm per "
            "sample, over all of its pixels", "the gradient's norm is taken over the channel dimension only: take one "
            "L2 norm per sample over all its pixels, grad.flatten(1).norm(dim=1)")),
        (wasserstein + GP_LAMBDA * (grad.norm() - 1).square(), _hint(
            "the gradient's norm is taken over the whole batch: ||grad D(x_hat)||_2 is one norm per sample",
            "the gradient's norm is taken over the whole batch: take one L2 norm per sample, "
            "grad.flatten(1).norm(dim=1)")),
        (wasserstein + GP_LAMBDA * (norms / len(norms) - 1).square().mean(), _hint(
            "the gradient is that of the mean of D's outputs, B times too small per sample: each sample's gradient "
            "is that of its own D(x_hat)", "the gradient is that of the mean of D's outputs, B times too small per "
            "sample: differentiate the sum, d(x_hat).sum()")),
        (wasserstein + GP_LAMBDA * (norms - 1).abs().mean(), _hint("the penalty is not squared: "
                                                                   "(||grad D(x_hat)||_2 - 1)^2")),
        (wasserstein + GP_LAMBDA * F.relu(1 - norms).square().mean(), _hint(
            "only gradient norms below 1 are penalised: (||grad D(x_hat)||_2 - 1)^2 punishes both sides of 1")),
    )
    mistakes = (*(("d_loss", value, hint) for value, hint in wrong_penalties),
                ("g_loss", p.d(x_fake).mean(), _hint("the sign is wrong: G's loss is -E[D(G(z))]")))
    return Expected(wasserstein + GP_LAMBDA * penalty, g_loss, list(p.d.parameters()), list(p.g.parameters()),
                    d_loss_without_penalty=wasserstein, mistakes=mistakes)


# ---- Checks of the inputs a solution feeds G and D ------------------------------------------------------------


def _check_z(probe: dict) -> list[Tensor]:
    """z of every G call, once each has shape (k B, dim_z)."""
    zs = _calls(probe, "z")
    if not zs:
        raise Failure("G was never called", "the fakes are G(z)")
    checked = []
    for z in zs:
        n = z.shape[0] if isinstance(z, Tensor) and z.dim() == 2 else 0
        if n == 0 or n % SAMPLING_BATCH or n > probes.MAX_CALLS * SAMPLING_BATCH:
            raise Failure(f"G got z as {probes._kind(z)}, for a batch of {SAMPLING_BATCH}",
                          f"z has one row per sample, shape (B, g.dim_z) = ({SAMPLING_BATCH}, {DIM_Z})")
        checked.append(_tensor(z, (n, DIM_Z), "z").double())
    return checked


def _check_z_distribution(checked: list[Tensor]) -> None:
    """The rows of each z differ (one draw per sample), and all the calls' z together look like N(0, I) draws."""
    within = min(z.std(0).mean().item() for z in checked)  # about 1 for independent rows, 0 for one row repeated
    z = torch.cat(checked)
    mean, std = z.mean().item(), z.std().item()
    per_dim_mean, per_dim_std = z.mean(0).abs().max().item(), z.std(0)
    if within < 0.5 or abs(mean) > 0.05 or abs(std - 1) > 0.05 or per_dim_mean > 0.4 or not (
            (per_dim_std > 0.7) & (per_dim_std < 1.3)).all():
        raise Failure(f"z does not look like N(0, I) draws, one per sample (mean {mean:.3f}, std {std:.3f}, "
                      f"per-dimension std from {per_dim_std.min().item():.3f} to {per_dim_std.max().item():.3f}, "
                      f"across one batch's rows {within:.3f})", "the handout draws z ~ N(0, I) for each sample",
                      "use torch.randn(B, g.dim_z)")


def _check_fake_labels(probe: dict, zs: list[Tensor]) -> None:
    """Fake labels are the real batch's labels, or uniform draws over the classes (p(y) = 1/m)."""
    y_real = probes.build("3.2", "sampling").y_real
    drawn = []  # the labels that are not y_real, over all the calls: 64 per call are too few to judge alone
    for z, y in zip(zs, _calls(probe, "y")):
        n = z.shape[0]
        if y is None:
            raise Failure("G was called without labels", "the conditional generator draws G(z, y)", "call g(z, y)")
        y = _tensor(y, (n,), "the fake labels", integer=True).long()
        if y.min() < 0 or y.max() >= NUM_CLASSES:
            raise Failure(f"the fake labels lie in {y.min()}..{y.max()}", f"classes are 0..{NUM_CLASSES - 1}")
        if not torch.equal(y, y_real.repeat(n // len(y_real))):
            drawn.append(y)
    if drawn:
        y = torch.cat(drawn)
        n = len(y)
        counts = torch.bincount(y, minlength=NUM_CLASSES)
        if counts.min() < 0.5 * n / NUM_CLASSES or counts.max() > 1.5 * n / NUM_CLASSES:
            missing = [str(k) for k in range(NUM_CLASSES) if counts[k] == 0]
            seen = (f"the fake labels never include class {', '.join(missing)} (class counts {counts.tolist()} over "
                    f"{n} fakes)" if missing else f"the fake labels are neither y_real nor uniform over the "
                    f"{NUM_CLASSES} classes (class counts {counts.tolist()} over {n} fakes)")
            raise Failure(seen, f"the fakes' labels follow the data's p(y): y_real, or uniform draws over all "
                          f"{NUM_CLASSES} classes 0..{NUM_CLASSES - 1}", "y_real, or torch.randint(0, g.num_classes, "
                          "y_real.shape): torch.randint's upper end is exclusive")


def _interpolates(probe: dict, n: int) -> list[Tensor]:
    """alpha (n,) of each batch of n interpolates D saw, alone or within one concatenated pass; every call's points
    must lie on the segments."""
    alphas, offs = _calls(probe, "alpha"), _calls(probe, "off")
    found = []
    for alpha, off in zip(alphas, offs):
        size = alpha.shape[0] if isinstance(alpha, Tensor) and alpha.dim() == 1 else 0
        if not 0 < size <= probes.MAX_CALLS * n:
            raise TypeError("alpha must be a vector")
        alpha, off = _tensor(alpha, (size,), "alpha"), _tensor(off, (size,), "off")
        if not (off < 1e-3).all() or alpha.min() < -1e-4 or alpha.max() > 1 + 1e-4:
            raise Failure("D was evaluated at points that are not on the segment from each fake to its real image",
                          "x_hat = alpha x_1 + (1 - alpha) x_2 with one alpha ~ U[0, 1] for each sample, not per "
                          "pixel", "draw alpha of shape (B, 1, 1, 1), not per pixel")
        if size % n == 0:  # one batch, or several in one critic pass (torch.cat([x_real, x_fake, x_hat]))
            found += [chunk for chunk in alpha.view(-1, n) if ((chunk > 1e-4) & (chunk < 1 - 1e-4)).any()]
    return found


# ---- The checks ------------------------------------------------------------------------------------------------


def _split_calls(probe: dict, key: str, values: list) -> tuple[list, list]:
    """What the sampling probe's first call of the function recorded, and what its second call did."""
    k = probe.get(key)
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= len(values):
        raise TypeError(f"{key} must count calls")
    return values[:k], values[k:]


def _reused(first: list, second: list) -> bool:
    return any(isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and torch.equal(a, b)
               for a in first for b in second)


def _sampling(problem: str, outputs) -> None:
    probe = _probe(outputs, problem, "sampling")
    zs = _check_z(probe)
    first, second = _split_calls(probe, "first_g", zs)
    if not second:
        raise Failure("a second call of the function did not call G", "each call draws fresh z and calls G")
    if _reused(first, second):
        raise Failure("a second call of the function fed G the same z as the first", "each call draws fresh noise "
                      "z ~ N(0, I): not once for all calls, and without reseeding", "draw fresh noise with "
                      "torch.randn on every call (not once, and without reseeding)")
    _check_z_distribution(zs)
    if problem == "3.2":
        y_real = probes.build("3.2", "sampling").y_real
        first, second = _split_calls(probe, "first_g", _calls(probe, "y"))
        drawn = [y for y in first if isinstance(y, Tensor) and not (y.shape == y_real.shape and torch.equal(y, y_real))]
        if _reused(drawn, second):
            raise Failure("a second call drew the same fake labels as the first",
                          "draw them afresh on every call (or use y_real)")
        _check_fake_labels(probe, zs)


def _alpha(outputs) -> None:
    probe = _probe(outputs, "4.5", "sampling")
    first, second = _split_calls(probe, "first_d", list(zip(_calls(probe, "alpha"), _calls(probe, "off"))))
    alphas = [{**probe, "alpha": [a for a, _ in calls], "off": [o for _, o in calls]} for calls in (first, second)]
    found = [_interpolates(p, SAMPLING_BATCH) for p in alphas]
    for alpha in found[0]:
        if alpha.std() < 1e-6:  # one value for every sample, e.g. a fixed 0.5: not a matter of reuse
            raise Failure(f"every sample has the same alpha ({alpha[0].item():.3g})", _ONE_ALPHA_EACH[0],
                          _ONE_ALPHA_EACH[1])
    if _reused(*found):
        raise Failure("a second call of the function used the same alpha as the first", "each call draws fresh "
                      "alpha ~ U[0, 1], without reseeding", "draw alpha with torch.rand on every call (not once, and "
                      "without reseeding)")
    for name, n in (("main", BATCH), ("sampling", SAMPLING_BATCH)):
        found = _interpolates(_probe(outputs, "4.5", name), n)
        if not found:
            raise Failure(*_NO_INTERPOLATES)
        for alpha in found:
            if alpha.std() < 0.1:
                raise Failure("every sample has the same alpha", *_ONE_ALPHA_EACH)
        alpha = torch.cat(found)  # all the calls' alphas: one batch of 64 is too few to judge alone
        if name == "sampling" and (abs(alpha.mean() - 0.5) > 0.1 or alpha.min() > 0.05 or alpha.max() < 0.95):
            raise Failure(f"alpha does not look like U[0, 1] draws (mean {alpha.mean():.3f}, range "
                          f"{alpha.min():.3f}..{alpha.max():.3f})", "alpha ~ U[0, 1]", "use torch.rand")


_ONE_ALPHA_EACH = _hint("the handout draws alpha ~ U[0, 1] for each sample",
                        "draw one alpha per sample, alpha ~ U[0, 1] of shape (B, 1, 1, 1)")
_NO_INTERPOLATES = ("D was never evaluated at a point x_hat = alpha x_1 + (1 - alpha) x_2 between a fake x_1 = "
                    "G(z) and a real image x_2 = x (0 < alpha < 1)", "the gradient penalty is taken there, with "
                    "alpha ~ U[0, 1]", "")


def _expected(problem: str, name: str, probe: dict, loss: str) -> list[Expected]:
    """What a correct solution returns; for 4.5's d_loss, one candidate per batch of interpolates D saw."""
    if problem != "4.5":
        return [_nonsaturating(problem, name)]
    if loss == "g_loss":  # independent of alpha
        return [_wasserstein_gp(name, torch.full((BATCH,), 0.5))]
    candidates = [_wasserstein_gp(name, alpha) for alpha in _interpolates(probe, BATCH)]
    if not candidates:
        raise Failure(*_NO_INTERPOLATES)
    return candidates


def _loss_value(problem: str, loss: str, outputs, name: str = "main") -> None:
    probe = _probe(outputs, problem, name)
    actual = _tensor(probe[loss], (), loss)
    candidates = _expected(problem, name, probe, loss)
    failures = []
    for expected in candidates:
        try:
            hint = _penalty_hint(actual, expected) if loss == "d_loss" and expected.wasserstein is not None else NO_HINT
            mismatched, inplace = probe.get("mismatched"), probe.get("inplace")
            if isinstance(inplace, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in inplace):
                lines = f" (gan.py line {', '.join(map(str, inplace[:4]))})" if inplace else ""
                hint = _changed_in_place(lines)
            elif hint == NO_HINT and problem == "3.2" and isinstance(mismatched, int) and mismatched > 0:
                hint = _hint(f"D scored {mismatched} images under a label other than their own: D(x, y) scores each "
                             "real image under its label, and each fake under the label it was drawn with",
                             f"D scored {mismatched} images under a label other than their own: score each real "
                             "image with y_real and each fake with the labels G drew it with")
            elif hint == NO_HINT and name == "extreme":
                hint = _hint("at logits of a few hundred the loss must still be exact: compute log D and log(1 - D) "
                             "from the logits, not from probabilities", "at logits of a few hundred the loss must "
                             "still be exact: compute it from the logits (F.softplus, F.logsigmoid or "
                             "F.binary_cross_entropy_with_logits), not from probabilities")
            _close(actual, getattr(expected, loss), loss, hint,
                   [(value, h) for which, value, h in expected.mistakes if which == loss])
            return
        except Failure as failure:
            failures.append(failure)
    raise failures[0]


def _d_value(problem: str, outputs) -> None:
    """d_loss on the main probe; for 4.5 also under a steep critic, whose gradient norms exceed 1 where the main
    one's stay below, so a penalty that punishes only one side of 1 shows."""
    _loss_value(problem, "d_loss", outputs)
    if problem == "4.5":
        try:
            _loss_value(problem, "d_loss", outputs, "steep")
        except Failure as failure:
            raise failure.prefixed("with a critic whose gradient norms exceed 1: ") from None


def _changed_in_place(lines: str = "") -> tuple[str, str]:
    return _hint(f"the images G returned were changed in place{lines}: an in-place operation changes every tensor "
                 "that shares its memory, and a detached tensor shares the memory of the tensor it was detached from")


def _penalty_hint(actual: Tensor, expected: Expected) -> tuple[str, str]:
    penalty = (expected.d_loss - expected.wasserstein) / GP_LAMBDA
    return _hint(f"d_loss - (E[D(G(z))] - E[D(x)]) = {(actual - expected.wasserstein).item():.6g}, while "
                 f"lambda * penalty = 10 x {penalty.item():.6g} (per-sample L2 norm over all pixels of the gradient "
                 f"w.r.t. the interpolates, minus 1, squared, averaged)")


def _loss_grads(problem: str, loss: str, outputs, name: str = "main") -> None:
    probe = _probe(outputs, problem, name)
    candidates = _expected(problem, name, probe, loss)
    if loss == "d_loss":
        actual = _tensors(probe["d_grads"], list(candidates[0].d_grads), "d_grads")
        net, hint = "D", _hint("L_D depends on D's parameters through D's outputs",
                               "compute it from D's outputs without detaching them")
    else:
        actual = _tensors(probe["g_grads"], list(candidates[0].g_grads), "g_grads")
        net, hint = "G", _hint("L_G must depend on G's parameters through G(z): keep the fakes attached to G in g_loss",
                               "do not detach x_fake in g_loss")
    failures = []
    for expected in candidates:
        try:
            if loss == "d_loss" and expected.wasserstein is not None and all(
                    torch.allclose(a, w, rtol=RTOL, atol=ATOL) for a, w in zip(actual, expected.wasserstein_grads)):
                value = probe.get("d_loss")
                if isinstance(value, Tensor) and value.numel() == 1 and torch.isclose(
                        value.float(), expected.wasserstein, rtol=RTOL, atol=ATOL):
                    raise Failure("the gradient penalty is 0 here, where the critic's gradient norms are below 1",
                                  "(||grad D(x_hat)||_2 - 1)^2 punishes norms on both sides of 1")
                raise Failure("the gradient penalty sends no gradient to D's parameters", "the penalty must stay a "
                              "function of D's parameters, through grad D(x_hat)", "take the gradient with "
                              "torch.autograd.grad(..., create_graph=True)")
            inplace = probe.get("inplace")
            wrong = _hint(f"every term of the handout's {'L_D' if loss == 'd_loss' else 'L_G'} must reach {net}'s "
                          "parameters as the formula says: check what is detached, or computed outside autograd")
            mismatched = probe.get("mismatched")
            if _value_wrong(problem, loss, outputs):
                wrong = _hint(f"its value is wrong too: see the {loss} value check")
            elif problem == "3.2" and isinstance(mismatched, int) and not isinstance(mismatched, bool) and mismatched:
                wrong = _hint(f"D scored {mismatched} images under a label other than their own: D(x, y) scores each "
                              "real image under its label, and each fake under the label it was drawn with")
            elif isinstance(inplace, list):
                wrong = _changed_in_place()
            elif loss == "d_loss" and expected.wasserstein is not None:
                wrong = _hint("the penalty's part of it comes through grad D(x_hat): lambda E[(||grad D(x_hat)||_2 - "
                              "1)^2], one L2 norm per sample, minus 1, squared")
            _close_grads(actual, expected.d_grads if loss == "d_loss" else expected.g_grads, loss, net, hint, wrong)
            return
        except Failure as failure:
            failures.append(failure)
    raise failures[0]


def _value_wrong(problem: str, loss: str, outputs) -> bool:
    """Whether ``loss``'s value on the main probe fails its check (so that other checks can point to it)."""
    try:
        _loss_value(problem, loss, outputs)
    except Failure:
        return True
    except Exception:  # noqa: BLE001 - malformed outputs: the value check says so
        pass
    return False


def _extreme(problem: str, outputs) -> None:
    for loss in ("d_loss", "g_loss"):
        try:
            _loss_value(problem, loss, outputs, "extreme")
            _loss_grads(problem, loss, outputs, "extreme")
        except Failure as failure:
            if _value_wrong(problem, loss, outputs):
                raise Failure(f"with logits of a few hundred: {failure.seen}", f"{loss} is wrong at ordinary "
                              f"logits too: see the {loss} value check") from None
            raise failure.prefixed("with logits of a few hundred: ") from None


def _checks(problem: str) -> tuple[Check, ...]:
    run = {
        "sampling": functools.partial(_sampling, problem),
        "alpha": _alpha,
        "d_value": functools.partial(_d_value, problem),
        "g_value": functools.partial(_loss_value, problem, "g_loss"),
        "d_grads": functools.partial(_loss_grads, problem, "d_loss"),
        "g_grads": functools.partial(_loss_grads, problem, "g_loss"),
        "extreme": functools.partial(_extreme, problem),
    }
    return tuple(Check(name, points, run[key]) for key, name, points in CHECKS[problem])


VALUE_CHECKS = ("d_loss value", "g_loss value")
RECORD_CHECKS = ("z ~ N(0, I)", "z ~ N(0, I), fake labels y_real or uniform", "interpolates with one alpha ~ U[0, 1] "
                 "per sample")
def _swapped(problem: str, outputs) -> Failure | None:
    """The failure of a function that returns (g_loss, d_loss): on the main probe each value is the other loss's."""
    try:
        probe = _probe(outputs, problem, "main")
        d_loss, g_loss = _tensor(probe["d_loss"], (), "d_loss"), _tensor(probe["g_loss"], (), "g_loss")
        for expected in _expected(problem, "main", probe, "d_loss"):
            close = functools.partial(torch.allclose, rtol=RTOL, atol=ATOL)
            if close(d_loss, expected.g_loss) and close(g_loss, expected.d_loss) and not close(d_loss, g_loss):
                return Failure("the two values are swapped: the first is g_loss and the second d_loss",
                               "the handout's functions return (d_loss, g_loss), in that order")
    except Exception:  # noqa: BLE001 - whatever keeps the probe from being read is the checks' own message
        return None
    return None


_NEEDS_VALUES = (f"{HELD_BACK} the d_loss and g_loss values are right: this check looks at how the function "
                 "draws its random inputs, which counts once the losses it returns are correct")
PROBLEMS: dict[str, Problem] = {number: Problem(number, FUNCTIONS[number], _checks(number)) for number in CHECKS}
