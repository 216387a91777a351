"""grading/similarity.py: copies paired, independent work not, whatever the copier changed."""
import re

import numpy as np
import pytest

from grading import similarity
from grading.handout import starter_files
from tests.conftest import ROOT
from tests.grading import classmates

REFERENCE = (ROOT / "codebase" / "gan.py").read_text()
STARTER = starter_files(names=["codebase/gan.py"])["codebase/gan.py"][0].decode()
VARIANTS = {p.stem: p.read_text() for p in (ROOT / "tests" / "grading").glob("variant_*.py")}
INDEPENDENT = {**classmates.solutions(), **VARIANTS}  # 19 correct solutions, written apart


def _pairs(sources, known=()):
    return {(a, b) for a, b, *_ in similarity.similar_code(sources, STARTER, [REFERENCE, *known])}


def test_no_two_independent_solutions_pair_not_even_the_textbook_ones():
    """On main at 712f5a9, three bare textbook solutions written apart overlapped by 54-65%, and 0.6 flagged them."""
    assert len(INDEPENDENT) >= 19
    assert _pairs(INDEPENDENT) == set()
    bare = {k: v for k, v in INDEPENDENT.items() if k.startswith("bare_")}
    assert len(bare) == 3 and _pairs(bare) == set()  # a class of three: no frequency to lean on


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_disguised_copy_pairs_with_its_original_in_a_class(seed):
    copies = {f"{name}_copy": classmates.disguise(source, seed) for name, source in INDEPENDENT.items()}
    pairs = _pairs({**INDEPENDENT, **copies})
    assert pairs == {tuple(sorted((name, f"{name}_copy"))) for name in INDEPENDENT}


def test_a_copy_of_the_reference_or_a_known_solution_is_not_flagged_but_a_copy_beyond_it_is():
    known = classmates.BARE["bare_named"]
    sources = {"a": known, "b": classmates.disguise(known, 3), "c": REFERENCE, "d": classmates.disguise(REFERENCE, 4)}
    assert _pairs(sources, [known]) == set()
    assert _pairs(sources) == {("a", "b")}


def test_the_longest_shared_fragment_is_named_by_its_lines():
    a = classmates.gan_py("loop_penalty")
    b = classmates.disguise(a, 5)
    (found,) = similarity.similar_code({"a": a, "b": b}, STARTER, [REFERENCE])
    first, last = found[3]
    loop = a.index("for i in range(size):")
    assert first <= a[:loop].count("\n") + 1 <= last and last - first >= 5


def _renamed(source: str) -> str:
    """A copy as a student hides it: names changed, comments and docstrings gone, layout changed."""
    for old, new in (("x_fake", "imgs_gen"), ("d_loss", "loss_of_d"), ("g_loss", "loss_of_g"), ("alpha", "t"),
                     ("x_real", "batch"), ("z", "noise")):
        source = re.sub(rf"\b{old}\b", new, source)
    source = re.sub(r"#[^\n]*", "", source)
    source = re.sub(r'"""[\s\S]*?"""', '""', source)
    return source.replace("    ", "\t").replace("\n\n", "\n\n\n")


def test_renamed_and_reformatted_copies_pair_and_stubs_do_not():
    sources = {**VARIANTS, "variant_copy": _renamed(VARIANTS["variant_gan"]), "stub": STARTER, "stub2": STARTER}
    found = similarity.similar_code(sources, STARTER, [REFERENCE])
    assert {(a, b) for a, b, *_ in found} == {("variant_copy", "variant_gan")}
    assert all(share > 0.9 for _, _, share, _ in found)


def test_tokens_drop_comments_docstrings_and_names_but_keep_the_api():
    a = similarity.tokens('def f(x):\n    """doc"""\n    # note\n    return F.logsigmoid(x).mean()\n')
    b = similarity.tokens("def g(y):\n  return F.logsigmoid(y).mean()")
    assert a == b == ["def", "V", "(", "V", ")", ":", "return", "V", ".", "logsigmoid", "(", "V", ")", ".", "mean",
                      "(", ")"]
    assert similarity.tokens("def (((\n'") != []  # what does not tokenise is still compared


def test_grids_pair_when_nearly_identical():
    g = np.random.default_rng(0)
    a = g.integers(0, 256, (302, 302), dtype=np.uint8)
    b = a.copy()
    b[2:30, 2:30] = 0  # one image of 100 changed
    c = g.integers(0, 256, (302, 302), dtype=np.uint8)
    assert [(x, y) for x, y, _ in similarity.similar_grids({"a": a, "b": b, "c": c})] == [("a", "b")]


@pytest.mark.parametrize("disguise", ["mirrored whole", "flipped whole", "each image mirrored in place",
                                      "each image upside down in place"])
def test_a_copied_grid_is_paired_however_it_was_mirrored_or_flipped(disguise):
    g = np.random.default_rng(1)
    a = np.zeros((302, 302), dtype=np.uint8)
    for row in range(10):
        for col in range(10):
            a[2 + 30 * row:30 + 30 * row, 2 + 30 * col:30 + 30 * col] = g.integers(0, 256, (28, 28))
    b = a.copy()
    if disguise == "mirrored whole":
        b = a[:, ::-1].copy()
    elif disguise == "flipped whole":
        b = a[::-1, :].copy()
    else:
        for row in range(10):
            for col in range(10):
                cell = a[2 + 30 * row:30 + 30 * row, 2 + 30 * col:30 + 30 * col]
                b[2 + 30 * row:30 + 30 * row, 2 + 30 * col:30 + 30 * col] = (
                    cell[:, ::-1] if "mirrored" in disguise else cell[::-1, :])
    assert not np.array_equal(a, b)
    c = g.integers(0, 256, (302, 302), dtype=np.uint8)
    found = similarity.similar_grids({"a": a, "b": b, "c": c})
    assert [(x, y) for x, y, _ in found] == [("a", "b")] and found[0][2] < 1e-3  # float32: 0 up to rounding
