"""The starter's public checks (tests/test_losses.py, as handout.py ships them) against the mutant catalogue:
every catalogued mistake fails at least one of them, with a message that names it without spelling out the code
at the default hint level; the reference and every correct variant pass them all."""
import json
import os
import subprocess
import sys
import zipfile

import pytest

from grading import handout
from tests.conftest import ROOT
from tests.grading import mutants
from tests.test_mutants import CODE

pytestmark = pytest.mark.xdist_group("public_checks")  # one worker runs the module: its tests share its pytest session

VARIANTS = ["variant_gan.py", "variant_concat_gan.py", "variant_func_gan.py", "variant_loop_gan.py"]

# One pytest session over a copy of the starter's tests/test_losses.py per gan.py source (tests/public_<i>.py, each
# bound to its source as `gan`), so that pytest starts once, not once per source. Prints, as JSON,
# {index: {test id: message of its failure}}. Plain asserts: a message is the assert's own, as the part of a
# rewritten one before "\nassert " that students see, without rewriting 40 copies of the file.
DRIVER = r"""
import json, sys
import pytest

class Collect:
    def __init__(self):
        self.failed = {}

    def pytest_runtest_logreport(self, report):
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = crash.message if crash else str(report.longrepr)
            index = report.nodeid.split("::", 1)[0].rsplit("_", 1)[1].removesuffix(".py")
            self.failed.setdefault(index, {})[report.nodeid.split("::", 1)[1]] = message.split("\nassert ")[0]

collect = Collect()
pytest.main(["-q", "-p", "no:cacheprovider", "--tb=line", "--assert=plain", "--rootdir", sys.argv[1], *sys.argv[2:]],
            plugins=[collect])
print("RESULTS " + json.dumps(collect.failed))
"""
# Binds `from codebase import gan` of the copied checks to one source, imported as codebase.gan imports it.
BIND = """import importlib.util as _util, sys as _sys
import codebase as _codebase
_spec = _util.spec_from_file_location("codebase.gan", {path!r})
_sys.modules["codebase.gan"] = _codebase.gan = _util.module_from_spec(_spec)
_spec.loader.exec_module(_codebase.gan)
"""


def _starter(folder, hints="handout"):
    path = folder / "starter.zip"
    handout.build(path, hints=hints)
    with zipfile.ZipFile(path) as zf:
        zf.extractall(folder)
    return folder / handout.TOP


def _run(folder, sources: dict[str, tuple[str, str]]) -> dict[str, dict[str, str]]:
    """{label: {failed test: message}} of public checks against gan.py sources, ``sources`` being {label: (the
    starter's tests/test_losses.py, at some hint level, the path of a gan.py)}; ``folder``: a starter."""
    files = []
    for i, (checks, path) in enumerate(sources.values()):
        copy = folder / "tests" / f"public_{i}.py"
        copy.write_text(BIND.format(path=path) + checks)
        files.append(str(copy))
    done = subprocess.run([sys.executable, "-c", DRIVER, str(folder), *files], capture_output=True, text=True,
                          timeout=600, cwd=folder, env={**os.environ, "PYTHONPATH": str(folder)})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
    assert lines, done.stdout[-3000:] + done.stderr[-3000:]
    failed = json.loads(lines[-1][len("RESULTS "):])
    return {label: failed.get(str(i), {}) for i, label in enumerate(sources)}


@pytest.fixture(scope="module")
def public(tmp_path_factory):
    """{label: {failed test: message}} for the reference, each variant and each mutant, at the default hint level,
    and for one mutant at the other hint levels (labels "none" and "full")."""
    work = tmp_path_factory.mktemp("public")
    folder = _starter(work)
    checks = {hints: (_starter(work / hints, hints) / "tests" / "test_losses.py").read_text()
              for hints in ("none", "full")}
    checks["handout"] = (folder / "tests" / "test_losses.py").read_text()
    reference = (ROOT / "codebase" / "gan.py").read_text()
    texts = {"reference": reference}
    texts.update({name: (ROOT / "tests" / "grading" / name).read_text() for name in VARIANTS})
    texts.update({mutant.slug: mutants.apply(reference, mutant) for mutant in mutants.MUTANTS})
    # the other correct draw of the conditional fakes' labels
    texts["uniform fake labels"] = reference.replace(
        "y_fake = y_real", "y_fake = torch.randint(0, g.num_classes, y_real.shape, device=device)", 1)
    sources = {}
    for i, (label, text) in enumerate(texts.items()):
        path = work / "sources" / str(i) / "gan.py"  # named as students name it: messages cite gan.py's lines
        path.parent.mkdir(parents=True)
        path.write_text(text)
        sources[label] = (checks["handout"], str(path))
    for hints in ("none", "full"):
        sources[hints] = (checks[hints], sources["alpha_drawn_once_per_batch"][1])
    return checks, _run(folder, sources)


@pytest.mark.parametrize("label", ["reference", *VARIANTS, "uniform fake labels"])
def test_correct_implementations_pass_every_public_check(public, label):
    assert public[1][label] == {}


@pytest.mark.parametrize("mutant", mutants.MUTANTS, ids=lambda m: m.slug)
def test_every_catalogued_mistake_fails_a_public_check_without_being_given_the_code(public, mutant):
    failed = public[1][mutant.slug]
    assert failed, f"{mutant.name!r} passes every public check"
    for test, message in failed.items():
        assert not [code for code in CODE if code in message], f"{test}: {message!r} spells out code"


def test_one_mistake_gives_one_message(public):
    swapped = set(public[1]["losses_returned_in_the_wrong_order"].values())
    numbers = set(public[1]["losses_returned_as_Python_numbers"].values())
    assert len(swapped) == 1 and "(d_loss, g_loss)" in swapped.pop()
    assert len(numbers) == 1 and "not .item()" in numbers.pop()
    assert len(public[1]["losses_returned_in_the_wrong_order"]) == 1  # the checks that depend on it are held back


@pytest.mark.parametrize("slug, says", [
    ("penalty_taken_at_the_real_images", "never evaluated"),
    ("alpha_drawn_once_per_batch", "every sample has the same alpha"),
    ("conditional_fake_labels_that_never_reach_the_last_class", "never include class 9"),
    ("real_images_scored_under_shuffled_labels", "under a label other than their own"),
    ("interpolates_built_in_place_on_the_detached_fakes", "changed in place (gan.py line"),
])
def test_the_costly_mistakes_are_named(public, slug, says):
    assert any(says in message for message in public[1][slug].values()), public[1][slug]


@pytest.mark.parametrize("hints", ["none", "full"])
def test_the_hint_level_of_the_starter_sets_what_the_checks_say(public, hints):
    checks = public[0][hints]
    assert f'HINTS = "{hints}"' in checks
    # pytest shows a failing test's source: below full, no recipe may stand in the file at all
    assert bool([code for code in ("create_graph", "(B, 1, 1, 1)", "torch.randn(B") if code in checks]) == (hints == "full")
    messages = " ".join(public[1][hints].values())  # the mutant that draws one alpha per batch
    assert "every sample has the same alpha" in messages
    assert ("(B, 1, 1, 1)" in messages) == (hints == "full")
    assert ("U[0, 1]" in messages) == (hints != "none")  # none: only what the check saw
