"""Known-wrong versions of codebase/gan.py, each one edit away from it: the grading suite must fail every one.

A mutant replaces the one match of a pattern in the reference source (no match or several fail loudly, so an
edit of gan.py that moves a snippet shows up as a failing test rather than as a silently unchanged mutant) and
names the check, "problem/check name", that must catch it. tests/test_mutants.py runs them.
"""
from __future__ import annotations

import re
from typing import NamedTuple

_D_LOSS = re.escape("return F.softplus(-_logits(d, x_real, y)).mean() + F.softplus(_logits(d, x_fake, y)).mean()")
_G_LOSS = re.escape("return F.softplus(-_logits(d, x_fake, y)).mean()  # -log sigmoid(h_fake)")
_ALPHA = r"alpha = torch\.rand\(.*"  # the whole line
_LOSSES = re.escape("return loss.d_loss(d, x_real, x_fake.detach(), y), loss.g_loss(d, x_fake, y)")
_NORM = r"\(grad\..*\.norm\(dim=1\) - 1\)"  # (per-sample norm - 1)
_OTHER_CLASS = "None if y is None else (y + 1) % 10"


class Mutant(NamedTuple):
    name: str
    pattern: str  # a regular expression
    new: str
    caught_by: str  # "problem/check name" of a check that must fail

    @property
    def slug(self) -> str:
        return re.sub(r"\W+", "_", self.name).strip("_")


MUTANTS = [
    Mutant("minimax G loss instead of the non-saturating one", _G_LOSS,
           "return -F.softplus(_logits(d, x_fake, y)).mean()", "1.2/g_loss value"),
    Mutant("D loss summed over the batch", _D_LOSS,
           "return F.softplus(-_logits(d, x_real, y)).sum() + F.softplus(_logits(d, x_fake, y)).sum()",
           "1.2/d_loss value"),
    Mutant("log of sigmoid probabilities", _D_LOSS,
           "return -torch.log(torch.sigmoid(_logits(d, x_real, y))).mean()"
           " - torch.log(1 - torch.sigmoid(_logits(d, x_fake, y))).mean()", "1.2/stable at extreme logits"),
    Mutant("binary cross-entropy on probabilities", _G_LOSS,
           "return F.binary_cross_entropy(torch.sigmoid(_logits(d, x_fake, y)), torch.ones(len(x_fake)))",
           "1.2/stable at extreme logits"),
    Mutant("z uniform instead of Gaussian", re.escape("return torch.randn(batch_size, dim_z, device=device)"),
           "return torch.rand(batch_size, dim_z, device=device)", "1.2/z ~ N(0, I)"),
    Mutant("one z for the whole batch", re.escape("return torch.randn(batch_size, dim_z, device=device)"),
           "return torch.randn(1, dim_z, device=device).expand(batch_size, -1)", "4.5/z ~ N(0, I)"),
    Mutant("fake detached in the G loss", _LOSSES,
           "return loss.d_loss(d, x_real, x_fake.detach(), y), loss.g_loss(d, x_fake.detach(), y)",
           "1.2/g_loss gradient to G"),
    Mutant("real images scored with the wrong class", re.escape("F.softplus(-_logits(d, x_real, y))"),
           f"F.softplus(-_logits(d, x_real, {_OTHER_CLASS}))", "3.2/d_loss value"),
    Mutant("fakes projected on another class than they were drawn for", _LOSSES,
           f"return loss.d_loss(d, x_real, x_fake.detach(), y), loss.g_loss(d, x_fake, {_OTHER_CLASS})",
           "3.2/g_loss value"),
    Mutant("alpha drawn per pixel", _ALPHA, "alpha = torch.rand_like(x_real)",
           "4.5/interpolates with one alpha ~ U[0, 1] per sample"),
    Mutant("alpha drawn once per batch", _ALPHA, "alpha = torch.rand((), device=x_real.device)",
           "4.5/interpolates with one alpha ~ U[0, 1] per sample"),
    Mutant("penalty taken at the real images", re.escape("x_hat = (alpha * x_real + (1 - alpha) * x_fake)"),
           "x_hat = (x_real)", "4.5/interpolates with one alpha ~ U[0, 1] per sample"),
    Mutant("penalty without create_graph", re.escape("x_hat, create_graph=True)"), "x_hat, create_graph=False)",
           "4.5/d_loss gradient to D"),
    Mutant("norm over the channel dimension only", _NORM, "(grad.norm(dim=1) - 1)",
           "4.5/d_loss value"),
    Mutant("norm over the whole batch", _NORM, "(grad.norm() - 1)", "4.5/d_loss value"),
    Mutant("norm over the top half of the image", _NORM, "(grad[:, :, :14].flatten(1).norm(dim=1) - 1)",
           "4.5/d_loss value"),
    Mutant("lambda = 1", re.escape("GP_LAMBDA = 10.0"), "GP_LAMBDA = 1.0", "4.5/d_loss value"),
    Mutant("gradient of the mean output", re.escape("_logits(d, x_hat, y).sum()"), "_logits(d, x_hat, y).mean()",
           "4.5/d_loss value"),
    Mutant("penalty not squared", re.escape("- 1).square().mean()"), "- 1).abs().mean()", "4.5/d_loss value"),
    Mutant("Wasserstein terms swapped", re.escape("return h_fake.mean() - h_real.mean() + GP_LAMBDA"),
           "return h_real.mean() - h_fake.mean() + GP_LAMBDA", "4.5/d_loss value"),
]


def apply(source: str, mutant: Mutant) -> str:
    """The source with the mutant's edit; fails unless its pattern matches exactly once."""
    mutated, count = re.subn(mutant.pattern, lambda _: mutant.new, source)
    if count != 1:
        raise ValueError(f"mutant {mutant.name!r}: its pattern matches {count} times in the reference, not once")
    return mutated
