"""codebase/diagnostics.py: warnings that tell a broken loss from a working one, and stay silent on correct runs."""
import random
import re

from codebase import diagnostics
from tests.conftest import ROOT


def _trace(d_center, g_center, steps=937, spread=0.3, seed=0):
    rng = random.Random(seed)
    return [(d_center(i) + rng.gauss(0, spread), g_center(i) + rng.gauss(0, spread)) for i in range(steps)]


def _warnings(gan, trace):
    monitor = diagnostics.Monitor(gan)
    return [(step, w) for step, (d, g) in enumerate(trace, 1) if (w := monitor.feed(d, g))]


def test_healthy_losses_raise_nothing_and_a_single_wild_step_neither():
    ns = _trace(lambda i: 1.25, lambda i: 0.95)
    ns[300] = (0.0, 40.0)  # one wild step: the median over the window ignores it
    assert _warnings("nonsaturating", ns) == []
    wgan = _trace(lambda i: -9 + i / 100 if i < 50 else -1.0, lambda i: -6.0 if i < 200 else -2.0, spread=1.5)
    assert _warnings("wasserstein_gp", wgan) == []


def test_a_penalty_that_does_not_hold_the_critic_is_named_once():
    blown = _trace(lambda i: 9 * 1.02 ** i, lambda i: -5.0)  # as without create_graph: 9 -> 270,000
    found = _warnings("wasserstein_gp", blown)
    assert len(found) == 1 and "gradient penalty" in found[0][1] and found[0][0] < 300


def test_d_winning_outright_is_named():
    collapse = _trace(lambda i: max(1.3 - i / 100, 0.01), lambda i: min(0.9 + i / 20, 12), spread=0.01)
    found = _warnings("conditional", collapse)
    assert len(found) == 1 and found[0][1].startswith("D wins outright")


def test_the_end_of_run_sentence_only_for_far_runs_with_the_reference_settings():
    assert diagnostics.verdict("nonsaturating", {"fid": 15.0}, True) is None
    assert "FID 40.0" in diagnostics.verdict("nonsaturating", {"fid": 40.0}, True)
    assert diagnostics.verdict("nonsaturating", {"fid": 40.0}, False) is None  # other settings: no reference
    low = diagnostics.verdict("conditional", {"fid": 6.7, "class_accuracy": 0.5}, True)
    assert "class accuracy 50.0%" in low and "88.9-90.0%" in low


def test_the_reference_ranges_are_the_readmes():
    table = (ROOT / "docs" / "engineering.md").read_text().split("### Results after one epoch")[1]
    fid = dict(re.findall(r"^\| (non-saturating|WGAN-GP|conditional \(non-saturating\)) \| [\d.]+ \| [\d.]+ "
                          r"\(([\d.]+–[\d.]+)\)", table, flags=re.M))
    names = {"nonsaturating": "non-saturating", "wasserstein_gp": "WGAN-GP",
             "conditional": "conditional (non-saturating)"}
    for gan, ((low, high), _) in diagnostics.REFERENCE.items():
        assert fid[names[gan]] == f"{low:.2f}–{high:.2f}"
    accuracy = re.search(r"\| ([\d.]+) \(([\d.]+)–([\d.]+)\), before", table)
    assert diagnostics.REFERENCE["conditional"][1] == (float(accuracy[2]), float(accuracy[3]))


def test_a_conditional_run_names_the_columns_that_miss_their_class():
    per_class = [0.84, 1.0, 0.8, 0.95, 0.76, 0.94, 0.73, 0.96, 0.96, 0.98]  # the reference's, seed 0
    assert diagnostics.verdict("conditional", {"fid": 6.4, "class_accuracy": 0.89, "per_class_accuracy": per_class},
                               True) is None
    per_class[9] = 0.005  # fake labels drawn from 0..8: class 9's column shows something else
    said = diagnostics.verdict("conditional", {"fid": 9.0, "class_accuracy": 0.8, "per_class_accuracy": per_class},
                               True)
    assert said.startswith("the grid's column 9 does not show its class: only 0.5% of the samples drawn for class 9 "
                           "(ankle boot)") and "every class 0..9" in said


def test_the_end_of_run_sentence_repeats_what_training_warned():
    warned = ["the critic's loss (median 300 over the last 50 steps) is far beyond the +-10: check the penalty"]
    said = diagnostics.verdict("wasserstein_gp", {"fid": 40.0}, True, warned)
    assert "while training it warned: the critic's loss (median 300" in said
    assert "latest_x3.png" in diagnostics.verdict("wasserstein_gp", {"fid": 40.0}, True)
