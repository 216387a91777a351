"""Known-wrong versions of codebase/gan.py, each one edit away from it: the grading suite must fail every one.

A mutant replaces the one match of a pattern inside one function of the reference source (no match or several
fail loudly, so an edit of gan.py that moves a snippet shows up as a failing test rather than as a silently
unchanged mutant) and names the check, "problem/check name", that must catch it. tests/test_mutants.py runs them.
"""
from __future__ import annotations

import re
from typing import NamedTuple

NS, COND, WGP = "loss_nonsaturating", "conditional_loss_nonsaturating", "loss_wasserstein_gp"
_Z = re.escape("z = torch.randn(x_real.shape[0], g.dim_z, device=device)")
_NS_D = re.escape("d_loss = F.softplus(-d(x_real)).mean() + F.softplus(d(x_fake.detach())).mean()")
_NS_G = re.escape("g_loss = F.softplus(-d(x_fake)).mean()")
_ALPHA = r"alpha = torch\.rand\(.*"  # the whole line
_NORM = r"\(grad\..*\.norm\(dim=1\) - 1\)"  # (per-sample norm - 1)


class Mutant(NamedTuple):
    name: str
    function: str  # the function of gan.py the edit is made in
    pattern: str  # a regular expression
    new: str
    caught_by: str  # "problem/check name" of a check that must fail
    says: str = ""  # words its message must hold at the default hint level: what to look at for this very mistake

    @property
    def slug(self) -> str:
        return re.sub(r"\W+", "_", self.name).strip("_")


MUTANTS = [
    Mutant("minimax G loss instead of the non-saturating one", NS, _NS_G, "g_loss = -F.softplus(d(x_fake)).mean()",
           "1.2/g_loss value",
           says="minimax loss"),
    Mutant("G loss of -log(1 - D) instead of -log D", NS, _NS_G, "g_loss = F.softplus(d(x_fake)).mean()",
           "1.2/g_loss value", says="this is -E[log(1 - D(G(z)))]"),
    Mutant("D loss summed over the batch", NS, _NS_D,
           "d_loss = F.softplus(-d(x_real)).sum() + F.softplus(d(x_fake.detach())).sum()", "1.2/d_loss value",
           says="average over the batch"),
    Mutant("log of sigmoid probabilities", NS, _NS_D,
           "d_loss = -torch.log(torch.sigmoid(d(x_real))).mean() - torch.log(1 - torch.sigmoid(d(x_fake))).mean()",
           "1.2/stable at extreme logits",
           says="not from probabilities"),
    Mutant("binary cross-entropy on probabilities", NS, _NS_G,
           "g_loss = F.binary_cross_entropy(torch.sigmoid(d(x_fake)), torch.ones(len(x_fake)))",
           "1.2/stable at extreme logits",
           says="not from probabilities"),
    Mutant("z uniform instead of Gaussian", NS, _Z, "z = torch.rand(x_real.shape[0], g.dim_z, device=device)",
           "1.2/z ~ N(0, I)",
           says="N(0, I)"),
    Mutant("one z for the whole batch", WGP, _Z,
           "z = torch.randn(1, g.dim_z, device=device).expand(x_real.shape[0], -1)", "4.5/z ~ N(0, I)",
           says="one per sample"),
    Mutant("fake detached in the G loss", NS, _NS_G, "g_loss = F.softplus(-d(x_fake.detach())).mean()",
           "1.2/g_loss gradient to G",
           says="keep the fakes attached to G"),
    Mutant("real images scored with the wrong class", COND, re.escape("F.softplus(-d(x_real, y_real))"),
           "F.softplus(-d(x_real, (y_real + 1) % 10))", "3.2/d_loss value",
           says="label other than their own"),
    Mutant("real images scored under shuffled labels", COND, re.escape("F.softplus(-d(x_real, y_real))"),
           "F.softplus(-d(x_real, y_real[torch.randperm(len(y_real))]))", "3.2/d_loss value",
           says="label other than their own"),
    Mutant("fakes projected on another class than they were drawn for", COND,
           re.escape("g_loss = F.softplus(-d(x_fake, y_fake)).mean()"),
           "g_loss = F.softplus(-d(x_fake, (y_fake + 1) % 10)).mean()", "3.2/g_loss value",
           says="label other than their own"),
    Mutant("alpha drawn per pixel", WGP, _ALPHA, "alpha = torch.rand_like(x_real)",
           "4.5/interpolates with one alpha ~ U[0, 1] per sample",
           says="not per pixel"),
    Mutant("alpha drawn once per batch", WGP, _ALPHA, "alpha = torch.rand((), device=device)",
           "4.5/interpolates with one alpha ~ U[0, 1] per sample",
           says="every sample has the same alpha"),
    Mutant("penalty taken at the real images", WGP, re.escape("(alpha * x_real + (1 - alpha) * x_fake.detach())"),
           "(x_real.clone())", "4.5/interpolates with one alpha ~ U[0, 1] per sample",
           says="never evaluated at a point x_hat"),
    Mutant("penalty without create_graph", WGP, re.escape("x_hat, create_graph=True)"), "x_hat, create_graph=False)",
           "4.5/d_loss gradient to D",
           says="function of D's parameters"),
    Mutant("norm over the channel dimension only", WGP, _NORM, "(grad.norm(dim=1) - 1)", "4.5/d_loss value",
           says="channel dimension"),
    Mutant("norm over the whole batch", WGP, _NORM, "(grad.norm() - 1)", "4.5/d_loss value",
           says="whole batch"),
    Mutant("norm over the top half of the image", WGP, _NORM, "(grad[:, :, :14].flatten(1).norm(dim=1) - 1)",
           "4.5/d_loss value",
           says="over all pixels"),
    Mutant("lambda = 1", WGP, re.escape("GP_LAMBDA * penalty"), "1.0 * penalty", "4.5/d_loss value",
           says="lambda is 10"),
    Mutant("gradient of the mean output", WGP, re.escape("d(x_hat).sum()"), "d(x_hat).mean()", "4.5/d_loss value",
           says="B times too small"),
    Mutant("penalty not squared", WGP, re.escape("- 1).square().mean()"), "- 1).abs().mean()", "4.5/d_loss value",
           says="not squared"),
    Mutant("one-sided penalty, only gradient norms below 1", WGP,
           re.escape("(grad.flatten(1).norm(dim=1) - 1).square()"), "F.relu(1 - grad.flatten(1).norm(dim=1)).square()",
           "4.5/d_loss value",
           says="both sides of 1"),
    Mutant("noise drawn once and reused on every call", NS, _Z,
           "z = _FROZEN.setdefault(('z', x_real.shape[0]), torch.randn(x_real.shape[0], g.dim_z, device=device))",
           "1.2/z ~ N(0, I)",
           says="fresh noise"),
    Mutant("noise reseeded on every call", WGP, _Z,
           "torch.manual_seed(0); z = torch.randn(x_real.shape[0], g.dim_z, device=device)", "4.5/z ~ N(0, I)",
           says="without reseeding"),
    Mutant("alpha drawn once and reused on every call", WGP, _ALPHA,
           "alpha = _FROZEN.setdefault(('alpha', x_real.shape[0]), "
           "torch.rand(x_real.shape[0], 1, 1, 1, device=device))",
           "4.5/interpolates with one alpha ~ U[0, 1] per sample",
           says="same alpha as the first"),
    Mutant("uniform fake labels drawn once and reused on every call", COND, re.escape("y_fake = y_real"),
           "y_fake = _FROZEN.setdefault(('y', x_real.shape[0]), "
           "torch.randint(0, 10, y_real.shape, device=device))",
           "3.2/z ~ N(0, I), fake labels y_real or uniform",
           says="same fake labels"),
    Mutant("alpha fixed at 0.5", WGP, _ALPHA, "alpha = torch.full((x_real.shape[0], 1, 1, 1), 0.5, device=device)",
           "4.5/interpolates with one alpha ~ U[0, 1] per sample", says="every sample has the same alpha (0.5)"),
    Mutant("one-sided penalty, only gradient norms above 1", WGP,
           re.escape("(grad.flatten(1).norm(dim=1) - 1).square()"), "F.relu(grad.flatten(1).norm(dim=1) - 1).square()",
           "4.5/d_loss gradient to D", says="punishes norms on both sides of 1"),
    Mutant("G loss of the critic with the wrong sign", WGP, re.escape("g_loss = -d(x_fake).mean()"),
           "g_loss = d(x_fake).mean()", "4.5/g_loss value", says="G's loss is -E[D(G(z))]"),
    Mutant("losses returned in the wrong order", NS, re.escape("return d_loss, g_loss"), "return g_loss, d_loss",
           "1.2/d_loss value", says="(d_loss, g_loss)"),
    Mutant("losses returned as Python numbers", WGP, re.escape("return d_loss, g_loss"),
           "return d_loss.item(), g_loss.item()", "4.5/d_loss value", says="not .item()"),
    Mutant("conditional fake labels that never reach the last class", COND, re.escape("y_fake = y_real"),
           "y_fake = torch.randint(0, 9, y_real.shape, device=device)",
           "3.2/z ~ N(0, I), fake labels y_real or uniform", says="never include class 9"),
    Mutant("interpolates built in place on the detached fakes", WGP,
           re.escape("x_hat = (alpha * x_real + (1 - alpha) * x_fake.detach()).requires_grad_(True)"),
           "x_hat = x_fake.detach(); x_hat.mul_(1 - alpha).add_(alpha * x_real); x_hat.requires_grad_(True)",
           "4.5/d_loss value", says="in place"),
    Mutant("Wasserstein terms swapped", WGP, re.escape("d_loss = d(x_fake.detach()).mean() - d(x_real).mean()"),
           "d_loss = d(x_real).mean() - d(x_fake.detach()).mean()", "4.5/d_loss value",
           says="swapped"),
]


def apply(source: str, mutant: Mutant) -> str:
    """The source with the mutant's edit inside its function; fails unless the pattern matches there exactly once.
    ``_FROZEN``, a module-level cache, is there for the mutants that draw once and reuse."""
    start = source.index(f"\ndef {mutant.function}(")
    end = source.find("\ndef ", start + 1)
    end = len(source) if end < 0 else end
    mutated, count = re.subn(mutant.pattern, lambda _: mutant.new, source[start:end])
    if count != 1:
        raise ValueError(f"mutant {mutant.name!r}: its pattern matches {count} times in {mutant.function}, not once")
    return source[:start] + mutated + source[end:] + "\n_FROZEN = {}\n"
