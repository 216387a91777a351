"""Check your loss functions in codebase/gan.py before you train or submit:

    python -m pytest -q tests/test_losses.py

Each test builds tiny networks whose outputs you can work out by hand: a generator that returns fixed images
whatever z is, and a discriminator whose logit is the first pixel of its input. The expected values below are
computed here with plain Python from the handout's formulas; other tests look at how your function draws z,
the fake labels and alpha, over several calls. Passing these tests is a good sign, not a grade: the grader runs
other checks too. Tests of a function you have not written yet fail with its NotImplementedError;
``loss_minimax`` (handout 1.1) is optional and skipped until you write it.
"""
import math

import pytest
import torch
from torch import nn

from codebase import gan

HINTS = "handout"  # what a failing check says beyond what it saw: none, handout (the handout's terms) or full
REAL, FAKE = [-2.0, 0.5, 3.0], [1.0, -1.5, 0.0]  # the logits D gives the real and the fake images
LABELS = [2, 0, 1]
MISMATCH = 4.0  # what the labelled discriminator adds to the logit of an image scored under another class


# BEGIN FULL HINTS (kept only in a starter built with --hints full)
FULL = {  # how to write it, by message
    "detach": "do not detach x_fake in g_loss",
    "logits": "work on logits with F.softplus or F.logsigmoid, never log(sigmoid(h))",
    "randn": "use torch.randn(B, g.dim_z)",
    "fresh z": "draw with torch.randn on every call, not once, and without reseeding",
    "labels": "y_fake = y_real, or torch.randint(0, g.num_classes, ...): its upper end is exclusive",
    "alpha per sample": "alpha of shape (B, 1, 1, 1), not per pixel",
    "same alpha": "one alpha ~ U[0, 1] per sample: alpha of shape (B, 1, 1, 1), drawn with torch.rand",
    "penalty in graph": "take the gradient with torch.autograd.grad(..., create_graph=True)",
    "norm": "grad.flatten(1).norm(dim=1), of the gradient of d(x_hat).sum()",
}
# END FULL HINTS


def say(seen, handout="", full=""):
    """A failing check's message at the course's hint level: what the check saw, then what it means in the
    handout's terms (handout), or how to write it (full: FULL[full])."""
    more = {"none": "", "handout": handout, "full": FULL.get(full, handout)}.get(HINTS, handout)
    return f"{seen}: {more}" if more else seen


@pytest.fixture(autouse=True)
def same_draws():
    """Every test starts from the same seed: the same draws, so the same verdicts, on every run."""
    torch.manual_seed(0)


def softplus(h):
    return max(h, 0.0) + math.log1p(math.exp(-abs(h)))  # log(1 + e^h) = -log sigmoid(-h) = -log(1 - sigmoid(h))


def images(logits, labels=None):
    """(n, 1, 28, 28) float64 images whose first pixel is the logit that FirstPixel gives them (and whose second
    pixel is their class, when labels are given)."""
    x = torch.zeros(len(logits), 1, 28, 28, dtype=torch.float64)
    x[:, 0, 0, 0] = torch.tensor(logits, dtype=torch.float64)
    if labels is not None:
        x[:, 0, 0, 1] = torch.as_tensor(labels, dtype=torch.float64)
    return x


class Fake(nn.Module):
    """A stand-in network: it offers the attributes the real one documents (codebase/network.py), and says so
    when your code asks for another."""

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            raise AttributeError(f"your code asked the test's {type(self).__name__} for {name!r}, which the real "
                                 f"networks do not document: use only {self.documented}") from None


class FixedG(Fake):
    """G(z) = the same images whatever z is (times a parameter equal to 1, so that G has a gradient); given
    labels y, each image carries its label in its second pixel. Records every (z, y) it gets."""

    documented = "g.dim_z, g.num_classes and g.width (codebase/network.py's Generator)"

    def __init__(self, logits, dim_z=8, num_classes=10):
        super().__init__()
        self.dim_z, self.num_classes, self.width = dim_z, num_classes, 32
        self.x = images(logits)
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))
        self.calls = []  # (z, y) of every call
        self.returned = []  # (images, their version when returned) of every call

    def forward(self, z, y=None):
        self.calls.append((z.detach().clone(), None if y is None else y.detach().clone()))
        x = self.x[torch.arange(len(z)) % len(self.x)]
        if y is not None:
            x = x.clone()
            x[:, 0, 0, 1] = y.to(x.dtype)
        x = x * self.scale
        self.returned.append((x, x._version))
        return x

    def changed_in_place(self):
        return any(x._version != version for x, version in self.returned)


class FirstPixel(Fake):
    """D(x) = w * x[0, 0, 0] + b with w = 1 and b = 0: the logit is the first pixel. Given labels y, it adds
    MISMATCH wherever y is not the class the image carries, so scoring an image under another class shows."""

    documented = "d.num_classes (codebase/network.py's Discriminator)"

    def __init__(self):
        super().__init__()
        self.num_classes = 10
        self.w = nn.Parameter(torch.ones((), dtype=torch.float64))
        self.b = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.labels = []
        self.mismatched = 0  # images scored under a label other than the class they carry

    def forward(self, x, y=None):
        self.labels.append(y)
        h = self.w * x.flatten(1)[:, 0] + self.b
        if y is None:
            return h
        wrong = y.to(h.dtype) != x.flatten(1)[:, 1].detach()
        self.mismatched += int(wrong.sum())
        return h + MISMATCH * wrong.to(h.dtype)


class LinearCritic(Fake):
    """D(x) = <w, x>: its gradient w.r.t. x is w everywhere, so the penalty is (||w|| - 1)^2 for every alpha."""

    documented = "d.num_classes (codebase/network.py's Discriminator)"

    def __init__(self, norm):
        super().__init__()
        self.num_classes = 0
        w = torch.randn(1, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        self.w = nn.Parameter(w / w.norm() * norm)

    def forward(self, x, y=None):
        return (x * self.w).flatten(1).sum(1)


class SegmentCritic(Fake):
    """D(x) = c ||x||^2 / 2, whose gradient at x is c x, so the penalty depends on where it is taken. The real
    images are a u and the fakes -a u (u a unit image): every point between them is (2 alpha - 1) a u. Records the
    rows of every input it can read, to tell where it was evaluated."""

    documented = "d.num_classes (codebase/network.py's Discriminator)"

    def __init__(self, a):
        super().__init__()
        self.num_classes = 0
        u = torch.randn(784, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        self.a, self.u = a, u / u.norm()
        self.c = nn.Parameter(torch.ones((), dtype=torch.float64))
        self.rows, self.unread = [], 0

    def image(self, sign, n):
        return (sign * self.a * self.u).view(1, 1, 28, 28).repeat(n, 1, 1, 1)

    def forward(self, x, y=None):
        try:
            self.rows.append(x.detach().reshape(-1, 784).double().clone())
            self.rows[-1].sum().item()  # fails on the batched tensors of torch.func, which hold no readable rows
        except RuntimeError:
            self.rows.pop()
            self.unread += 1
        return self.c * x.flatten(1).square().sum(1) / 2


def call(name, g, d, x_real, y_real=None):
    function = getattr(gan, name, None)
    if function is None and name == "loss_minimax":
        pytest.skip("loss_minimax (handout 1.1) is optional")
    args = (g, d, x_real) if y_real is None else (g, d, x_real, y_real)
    try:
        return function(*args, device="cpu")
    except NotImplementedError:
        if name == "loss_minimax":
            pytest.skip("loss_minimax (handout 1.1) is optional")
        raise


def losses(name, g, d, x_real, y_real=None, first=False):
    """(d_loss, g_loss) once the function returns what every other check relies on: two 0-d tensors, in the
    handout's order, images scored under their own labels, and G's images left as they were. A mistake there
    fails the ``first`` check that meets it; the checks that depend on it are held back (skipped), so that one
    mistake gives one message."""
    try:
        returned = call(name, g, d, x_real, y_real)
        check_returns(returned)
        if name in ALL:
            check_order(name)
        if isinstance(d, FirstPixel) and d.mismatched:
            raise Mistake(say(f"D scored {d.mismatched} of the images under a label other than their own",
                              "D(x, y) scores each real image x under its own label y, and each fake G(z, y) under "
                              "the label y it was drawn with"))
        if isinstance(g, FixedG) and g.changed_in_place():
            raise Mistake(say(f"the images G returned were changed in place{_lines(name, g, d, x_real, y_real)}",
                              "an in-place operation changes every tensor that shares its memory, and a detached "
                              "tensor shares the memory of the tensor it was detached from"))
    except Mistake as mistake:
        if first:
            pytest.fail(str(mistake))
        pytest.skip(f"held back until the check of what the function returns passes: {mistake}")
    return returned


class Mistake(Exception):
    """A mistake every other check depends on."""


def _lines(name, g, d, x_real, y_real):
    """' (gan.py line N)': where the function makes in-place operations."""
    from codebase.diagnostics import inplace_lines

    try:
        lines = inplace_lines(lambda: call(name, g, d, x_real, y_real))
    except Exception:  # noqa: BLE001 - the message stands without the lines
        lines = []
    return f" (gan.py line {', '.join(map(str, lines))})" if lines else ""


def check_returns(returned):
    if not (isinstance(returned, tuple) and len(returned) == 2):
        raise Mistake(say(f"the function returned {_kind(returned)}", "return (d_loss, g_loss), a pair"))
    for what, loss in zip(("d_loss", "g_loss"), returned):
        if isinstance(loss, (float, int)):
            raise Mistake(say(f"{what} is a Python number", "return a tensor, not .item(): training needs its "
                                                             "gradient"))
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise Mistake(say(f"{what} is {_kind(loss)}", "each loss is one scalar tensor: E[...] averages the "
                                                           "batch"))


def _kind(value):
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}" + (f" of {len(value)}" if isinstance(value, tuple) else "")


_ORDER = {}


def check_order(name):
    """Fails when the function returns (g_loss, d_loss): on the probes of the value checks, each value is the
    other loss's."""
    if name not in _ORDER:
        if name == "loss_wasserstein_gp":
            g, d = FixedG(FAKE), LinearCritic(3.0)
            x_real, y_real = images(REAL), None
            expected = wasserstein_expected(g, d, x_real, 3.0)
        else:
            g, d = FixedG(FAKE), FirstPixel()
            x_real, y_real = images(REAL, LABELS), torch.tensor(LABELS) if name.startswith("conditional") else None
            expected = nonsaturating_expected(name)
        returned = call(name, g, d, x_real, y_real)
        check_returns(returned)
        values = [v.item() for v in returned]
        _ORDER[name] = (math.isclose(values[0], expected[1], rel_tol=1e-6)
                        and math.isclose(values[1], expected[0], rel_tol=1e-6)
                        and not math.isclose(expected[0], expected[1], rel_tol=1e-6))
    if _ORDER[name]:
        raise Mistake(say("the two values are swapped: the first is g_loss and the second d_loss",
                          "the handout's functions return (d_loss, g_loss), in that order"))


def nonsaturating_expected(name):
    d_loss = sum(softplus(-h) for h in REAL) / 3 + sum(softplus(h) for h in FAKE) / 3  # -log D(x) - log(1 - D(G(z)))
    if name == "loss_minimax":
        return d_loss, -sum(softplus(h) for h in FAKE) / 3  # E[log(1 - D(G(z)))]
    return d_loss, sum(softplus(-h) for h in FAKE) / 3  # -E[log D(G(z))]


def wasserstein_expected(g, d, x_real, norm):
    critic_fake, critic_real = (d.w * g.x).sum().item() / 3, (d.w * x_real).sum().item() / 3
    return critic_fake - critic_real + 10 * (norm - 1) ** 2, -critic_fake


def nonsaturating(name):
    g, d = FixedG(FAKE), FirstPixel()
    conditional = name.startswith("conditional")
    x_real, y = images(REAL, LABELS if conditional else None), torch.tensor(LABELS) if conditional else None
    return g, d, losses(name, g, d, x_real, y)


LAMBDA_ONE = "the penalty is weighted by 1: the handout's lambda is 10"
NONSATURATING = ["loss_nonsaturating", "conditional_loss_nonsaturating", "loss_minimax"]
ALL = NONSATURATING + ["loss_wasserstein_gp"]


def _close(actual, expected):
    return math.isclose(actual, expected, rel_tol=1e-6, abs_tol=1e-9)


# ---- What the function returns ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_returns_two_scalar_tensors_in_order(name):
    g, d = FixedG(FAKE), (LinearCritic(1.0) if name == "loss_wasserstein_gp" else FirstPixel())
    y = torch.tensor(LABELS) if name.startswith("conditional") else None
    losses(name, g, d, images(REAL, LABELS if y is not None else None), y, first=True)


def test_each_image_is_scored_under_its_own_label():
    n = 200
    y = (torch.arange(n) % 10)[torch.randperm(n, generator=torch.Generator().manual_seed(2))]
    losses("conditional_loss_nonsaturating", FixedG([0.5] * n), FirstPixel(), images([0.5] * n, y), y, first=True)


@pytest.mark.parametrize("name", NONSATURATING)
def test_d_loss_value(name):
    _, _, (d_loss, _) = nonsaturating(name)
    expected = nonsaturating_expected(name)[0]
    if _close(d_loss.item(), 3 * expected):
        pytest.fail(say(f"d_loss = {d_loss.item():.6g}, expected {expected:.6g}", "it is B times too large: each "
                        "E[...] is an average over the batch, not a sum"))
    if name.startswith("conditional") and not _close(d_loss.item(), expected):
        pytest.fail(say(f"d_loss = {d_loss.item():.6g}, expected {expected:.6g}", "D(x, y) scores each real image "
                        "x under its own label y, and each fake G(z, y) under the label y it was drawn with"))
    assert _close(d_loss.item(), expected), say(
        f"d_loss = {d_loss.item():.6g}, expected {expected:.6g}",
        "L_D = -E_x[log D(x)] - E_z[log(1 - D(G(z)))], with D = sigmoid of the logits d returns")


@pytest.mark.parametrize("name", NONSATURATING)
def test_g_loss_value(name):
    _, _, (_, g_loss) = nonsaturating(name)
    expected = nonsaturating_expected(name)[1]
    formula = "L_G = E_z[log(1 - D(G(z)))]" if name == "loss_minimax" else "L_G = -E_z[log D(G(z))]"
    if name != "loss_minimax" and _close(g_loss.item(), nonsaturating_expected("loss_minimax")[1]):
        pytest.fail(say(f"g_loss = {g_loss.item():.6g}, expected {expected:.6g}", "this is the minimax loss of "
                        f"1.1; the non-saturating loss of 1.2 is {formula}"))
    if name.startswith("conditional") and not _close(g_loss.item(), expected):
        pytest.fail(say(f"g_loss = {g_loss.item():.6g}, expected {expected:.6g}", "D(G(z, y), y) scores each fake "
                        "under the label y it was drawn with"))
    assert _close(g_loss.item(), expected), say(f"g_loss = {g_loss.item():.6g}, expected {expected:.6g}", formula)


@pytest.mark.parametrize("name", NONSATURATING)
def test_each_loss_trains_its_own_network(name):
    g, d, (d_loss, g_loss) = nonsaturating(name)
    d_grads = torch.autograd.grad(d_loss, list(d.parameters()), allow_unused=True, retain_graph=True)
    assert any(grad is not None and grad.abs().sum() > 0 for grad in d_grads), say(
        "d_loss sends no gradient to D's parameters", "L_D depends on D through D(x) and D(G(z))")
    (g_grad,) = torch.autograd.grad(g_loss, [g.scale], allow_unused=True)
    assert g_grad is not None and g_grad.abs() > 0, say(
        "g_loss sends no gradient to G's parameters",
        "L_G must depend on G's parameters through G(z): keep the fakes attached to G in g_loss",
        "detach")


@pytest.mark.parametrize("name", NONSATURATING)
@pytest.mark.parametrize("h", [1e4, -1e4])
def test_finite_at_extreme_logits(name, h):
    g, d = FixedG([h, -h]), FirstPixel()
    conditional = name.startswith("conditional")
    y = torch.tensor([0, 1]) if conditional else None
    d_loss, g_loss = losses(name, g, d, images([h, -h], [0, 1] if conditional else None), y)
    grads = torch.autograd.grad(d_loss + g_loss, [d.w, d.b, g.scale], allow_unused=True)
    stable = say(f"with logits of +-{abs(h):g}, d_loss = {d_loss.item():.6g} and g_loss = {g_loss.item():.6g}",
                 "at such logits sigmoid rounds to 0 or 1, so compute log D and log(1 - D) from the logits, not from "
                 "probabilities", "logits")
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss), stable
    assert all(grad is None or torch.isfinite(grad) for grad in grads), stable
    # The real image at logit -h and the fake at +h each cost |h| / 2 after the batch mean; so do G's two fakes.
    assert d_loss.item() == pytest.approx(1e4, rel=1e-6), stable
    assert g_loss.item() == pytest.approx(-5e3 if name == "loss_minimax" else 5e3, rel=1e-6), stable


# ---- How the function draws z, the fake labels and alpha -------------------------------------------------------


def _twice(name, g, d, x_real, y_real=None):
    """Call the function twice (as two training steps would); the G calls each made."""
    torch.manual_seed(0)
    losses(name, g, d, x_real, y_real)
    first = len(g.calls)
    losses(name, g, d, x_real, y_real)
    return g.calls[:first], g.calls[first:]


@pytest.mark.parametrize("name", ALL)
def test_z_is_fresh_standard_normal_noise_for_each_sample(name):
    n = 512
    g = FixedG([0.5] * n, dim_z=16)
    d = LinearCritic(1.0) if name == "loss_wasserstein_gp" else FirstPixel()
    conditional = name.startswith("conditional")
    y = torch.arange(n) % 10 if conditional else None
    first, second = _twice(name, g, d, images([0.5] * n, y), y)
    assert first and second, say("G was never called", "the fakes are G(z)")
    for z, _ in first + second:
        assert z.dim() == 2 and z.shape[1] == g.dim_z and z.shape[0] % n == 0, say(
            f"G got z of shape {tuple(z.shape)}, for a batch of {n}", "z has one row per sample: shape (B, g.dim_z)")
        z = z.double()
        spread = z.std(0)  # per dimension, across the samples
        assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05 and (spread > 0.7).all() and (spread < 1.3).all(), say(
            f"z does not look like independent N(0, I) draws, one per sample (mean {z.mean():.3f}, std {z.std():.3f}, "
            f"std across samples from {spread.min():.3f} to {spread.max():.3f})",
            "the handout draws z ~ N(0, I) for each sample", "randn")
    assert not any(torch.equal(a, b) for a, _ in first for b, _ in second), say(
        "a second call fed G the same z as the first", "each call draws fresh noise z ~ N(0, I)",
        "fresh z")


def test_fake_labels_are_the_real_ones_or_uniform_over_every_class():
    n = 1000
    y_real = (torch.arange(n) % 10)[torch.randperm(n, generator=torch.Generator().manual_seed(1))]
    g, d = FixedG([0.5] * n), FirstPixel()
    first, second = _twice("conditional_loss_nonsaturating", g, d, images([0.5] * n, y_real), y_real)
    assert all(y is not None for _, y in first + second), say("G was called without labels", "draw fakes as G(z, y)")
    for _, y in first + second:
        if y.shape == y_real.shape and torch.equal(y, y_real):
            continue
        counts = torch.bincount(y.long().clamp(0, 10), minlength=11)[:11].tolist()
        missing = [k for k in range(10) if counts[k] == 0]
        seen = (f"the fake labels never include class {', '.join(map(str, missing))}" if missing else
                f"the fake labels are neither y_real nor uniform over the 10 classes (class counts {counts[:10]} in "
                f"a batch of {n}" + (f", and {counts[10]} outside 0..9)" if counts[10] else ")"))
        assert y.min() >= 0 and y.max() <= 9 and min(counts[:10]) > n / 20 and max(counts[:10]) < 3 * n / 20, say(
            seen, "the fakes' labels follow the data's p(y): the real batch's labels, or uniform draws over all 10 "
            "classes 0..9", "labels")
    drawn = [y for _, y in first if not torch.equal(y, y_real)]
    assert not any(torch.equal(a, b) for a in drawn for _, b in second), say(
        "a second call drew the same fake labels as the first", "draw them afresh on every call (or use y_real)")


def test_conditional_loss_gives_labels_to_both_networks():
    g, d, _ = nonsaturating("conditional_loss_nonsaturating")
    assert g.calls and all(y is not None for _, y in g.calls), say("G was called without labels", "call g(z, y)")
    assert d.labels and all(y is not None for y in d.labels), say("D was called without labels", "call d(x, y)")


def _interpolates(d, calls):
    """alpha of each point D was evaluated at strictly between a fake (alpha = 0) and a real image (alpha = 1),
    per call of the function, and whether D saw any point off that segment."""
    found, off_segment = [], False
    for rows in calls:
        points = torch.cat(rows) if rows else torch.zeros(0, 784, dtype=torch.float64)
        along = points @ d.u / d.a  # 2 alpha - 1
        off = (points - along[:, None] * d.a * d.u).norm(dim=1) / d.a
        off_segment |= bool((off > 1e-5).any())
        alpha = (along[off <= 1e-5] + 1) / 2
        found.append(alpha[(alpha > 1e-6) & (alpha < 1 - 1e-6)])
    return found, off_segment


def test_gradient_penalty_is_taken_at_interpolates_with_one_alpha_per_sample():
    n, a = 512, 3.0
    d = SegmentCritic(a)
    g = FixedG([0.0])
    g.x = d.image(-1, 1)  # every fake is -a u, every real image a u
    x_real = d.image(1, n)
    torch.manual_seed(0)
    calls, d_losses = [], []
    for _ in range(2):
        d.rows = []
        d_loss, _ = losses("loss_wasserstein_gp", g, d, x_real)
        calls.append(d.rows)
        d_losses.append(d_loss.item())
    found, off_segment = _interpolates(d, calls)
    where = "the penalty is taken at x_hat = alpha x_1 + (1 - alpha) x_2, with x_1 = G(z), x_2 = x and alpha ~ U[0, 1]"
    if not d.unread:
        assert not off_segment, say(
            "D was evaluated at points that are not on the line from each fake to its real image", where + ", one "
            "alpha for each sample (not one per pixel)", "alpha per sample")
        for alpha in found:
            assert len(alpha), say("D was never evaluated at a point between a fake and a real image", where)
            assert len(alpha) >= n, say(f"D saw {len(alpha)} points between a fake and a real image, for a batch of "
                                        f"{n}", where + ": one point per sample")
            assert alpha.std() > 0.1, say(
                f"every sample has the same alpha ({alpha[0]:.3g})", "the handout draws alpha ~ U[0, 1] for each sample",
                "same alpha")
            assert abs(alpha.mean() - 0.5) < 0.1 and alpha.min() < 0.05 and alpha.max() > 0.95, say(
                f"alpha does not look like U[0, 1] draws (mean {alpha.mean():.3f}, range {alpha.min():.3f}.."
                f"{alpha.max():.3f})", "alpha ~ U[0, 1]")
        assert not torch.equal(found[0][:n], found[1][:n]), say(
            "a second call used the same alpha as the first", "each call draws fresh alpha ~ U[0, 1]")
        # E[D(G(z))] - E[D(x)] = 0 here (||a u|| = ||-a u||); the gradient of D at x_hat is x_hat, of norm a |2 alpha - 1|.
        for alpha, d_loss in zip(found, d_losses):
            expected = 10 * ((a * (2 * alpha[:n] - 1).abs() - 1) ** 2).mean().item()
            if math.isclose(10 * d_loss, expected, rel_tol=1e-5):
                pytest.fail(say(f"d_loss = {d_loss:.6g}, expected {expected:.6g}", LAMBDA_ONE))
            assert math.isclose(d_loss, expected, rel_tol=1e-5), say(
                f"d_loss = {d_loss:.6g}, expected {expected:.6g} from the points D was evaluated at (the right "
                "ones), for a critic whose gradient at x is x", "so look at the penalty itself: lambda E[(||grad "
                "D(x_hat)||_2 - 1)^2], with ||.||_2 the L2 norm of each sample's gradient, minus 1, squared")
    else:  # torch.func: the points cannot be read, but the average penalty over alpha ~ U[0, 1] is a^2/3 - a + 1
        expected = 10 * (a * a / 3 - a + 1)
        for d_loss in d_losses:
            assert abs(d_loss - expected) < 0.2 * 10, say(
                f"d_loss = {d_loss:.6g}, where penalties at x_hat average {expected:.6g}", where + ", for each sample")


@pytest.mark.parametrize("norm", [3.0, 0.25])
def test_wasserstein_gp_value_with_a_linear_critic(norm):
    g, d = FixedG(FAKE), LinearCritic(norm)
    x_real = images(REAL)
    d_loss, g_loss = losses("loss_wasserstein_gp", g, d, x_real)
    expected_d, expected_g = wasserstein_expected(g, d, x_real, norm)
    critic = expected_d - 10 * (norm - 1) ** 2
    if _close(d_loss.item(), critic + (norm - 1) ** 2):
        pytest.fail(say(f"d_loss = {d_loss.item():.6g}, expected {expected_d:.6g}", LAMBDA_ONE))
    if _close(d_loss.item(), -critic + 10 * (norm - 1) ** 2):
        pytest.fail(say(f"d_loss = {d_loss.item():.6g}, expected {expected_d:.6g}", "the critic's terms are swapped: "
                        "L_D = E_z[D(G(z))] - E_x[D(x)] + lambda E[(||grad D(x_hat)||_2 - 1)^2]"))
    assert _close(d_loss.item(), expected_d), say(
        f"d_loss = {d_loss.item():.6g}, expected {expected_d:.6g} (the critic's gradient norm is {norm:g} "
        f"everywhere, so the penalty term is {10 * (norm - 1) ** 2:.6g})",
        "L_D = E_z[D(G(z))] - E_x[D(x)] + lambda E[(||grad D(x_hat)||_2 - 1)^2], with lambda = 10: the L2 norm "
        "of the gradient (a square root of its sum of squares), minus 1, squared, on both sides of 1")
    assert _close(g_loss.item(), expected_g), say(f"g_loss = {g_loss.item():.6g}, expected {expected_g:.6g}",
                                                  "L_G = -E_z[D(G(z))]")


@pytest.mark.parametrize("norm", [3.0, 0.25])
def test_gradient_penalty_reaches_the_critics_parameters(norm):
    # Training steps D on d_loss's gradient w.r.t. D's parameters, so the penalty must be part of that gradient:
    # d/dw [E[D(G(z))] - E[D(x)]] = mean fake - mean real, and d/dw 10 (||w|| - 1)^2 = 20 (||w|| - 1) w / ||w||.
    g, d = FixedG(FAKE), LinearCritic(norm)
    x_real = images(REAL)
    d_loss, _ = losses("loss_wasserstein_gp", g, d, x_real)
    (grad,) = torch.autograd.grad(d_loss, [d.w], allow_unused=True)
    wasserstein = g.x.mean(0) - x_real.mean(0)
    assert grad is not None, say("d_loss sends no gradient to D's parameters", "L_D depends on D")
    assert not torch.allclose(grad, wasserstein), say(
        "the gradient penalty sends no gradient to D's parameters: d_loss's gradient w.r.t. D's weights lacks the "
        "penalty's term", "the penalty must stay a function of D's parameters, through grad D(x_hat)",
        "penalty in graph")
    expected = wasserstein + 20 * (norm - 1) * d.w.detach() / norm
    assert torch.allclose(grad, expected, rtol=1e-6, atol=1e-9), say(
        f"d_loss's gradient w.r.t. D's weights is wrong (largest error {(grad - expected).abs().max():.3g})",
        "lambda E[(||grad D(x_hat)||_2 - 1)^2] is part of L_D")


def test_gradient_penalty_norm_is_per_sample_over_all_pixels():
    # D(x) = ||x||^2 / 2 has gradient x. With x_real == x_fake every interpolate is x, whatever alpha is,
    # so the penalty is the mean over samples of (||x_i|| - 1)^2, each norm over all 784 pixels of sample i.
    class HalfSquare(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Parameter(torch.ones((), dtype=torch.float64))
            self.rows = []

        def forward(self, x, y=None):
            try:  # where it was evaluated, when that can be read (not under torch.func)
                self.rows.append(x.detach().reshape(-1, 784).double().clone())
                self.rows[-1].sum().item()
            except RuntimeError:
                self.rows.pop()
            return self.c * x.square().flatten(1).sum(1) / 2

    scales = [0.01, 0.03, 0.05, 0.1]
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = x * torch.tensor(scales, dtype=torch.float64).view(4, 1, 1, 1)
    g = FixedG([0.0] * 4)
    g.x = x
    d = HalfSquare()
    d_loss, _ = losses("loss_wasserstein_gp", g, d, x)
    rows, seen = x.reshape(4, 784), torch.cat(d.rows) if d.rows else torch.zeros(0, 784, dtype=torch.float64)
    if any(not torch.isclose(row, rows, rtol=1e-5, atol=1e-9).all(1).any() for row in seen):
        pytest.skip("held back: D was evaluated at points that are not between the fakes and the real images (see "
                    "test_gradient_penalty_is_taken_at_interpolates_with_one_alpha_per_sample)")
    norms = [math.sqrt(sum(v * v for v in xi.flatten().tolist())) for xi in x]
    expected = 10 * sum((n - 1) ** 2 for n in norms) / 4
    if _close(10 * d_loss.item(), expected):
        pytest.fail(say(f"d_loss = {d_loss.item():.6g}, expected {expected:.6g}", LAMBDA_ONE))
    assert d_loss.item() == pytest.approx(expected, rel=1e-6), say(
        f"d_loss = {d_loss.item():.6g}, expected {expected:.6g} for a critic whose gradient at x is x",
        "||grad D(x_hat)||_2 is one L2 norm per sample, over all of its pixels, of the gradient of D's output "
        "for that sample", "norm")


@pytest.mark.parametrize("name", ALL)
def test_runs_with_the_real_networks(name):
    from codebase.network import Discriminator, Generator

    torch.manual_seed(0)
    conditional = name.startswith("conditional")
    g, d = Generator(dim_z=16, num_classes=10 if conditional else 0), Discriminator(num_classes=10 if conditional else 0)
    x_real = torch.rand(4, 1, 28, 28) * 2 - 1
    d_loss, g_loss = losses(name, g, d, x_real, torch.tensor([0, 3, 9, 3]) if conditional else None)
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    assert any(p.grad is None for p in d.parameters())  # the function computes losses; the training loop steps
