"""The starter's public checks (tests/test_losses.py, as handout.py ships them) against the mutant catalogue:
every catalogued mistake fails at least one of them, with a message that names it without spelling out the code
at the default hint level; the reference and every correct variant pass them all."""
import json
import subprocess
import sys
import zipfile

import pytest

from grading import handout
from tests.conftest import ROOT
from tests.grading import mutants
from tests.test_mutants import CODE

VARIANTS = ["variant_gan.py", "variant_concat_gan.py", "variant_func_gan.py", "variant_loop_gan.py"]

# Runs tests/test_losses.py of the starter in FOLDER once per gan.py source, in one process; prints, as JSON,
# {label: {test id: message of its failure}}.
DRIVER = r"""
import json, sys, importlib.util
import pytest

folder, sources = sys.argv[1], json.load(open(sys.argv[2]))
sys.path.insert(0, folder)
import codebase

class Collect:
    def __init__(self):
        self.failed = {}

    def pytest_runtest_logreport(self, report):
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = crash.message if crash else str(report.longrepr)
            self.failed[report.nodeid.split("::", 1)[1]] = message.split("\nassert ")[0]

found = {}
for label, path in sources.items():
    for name in [m for m in sys.modules if m in ("test_losses", "codebase.gan")]:
        del sys.modules[name]
    spec = importlib.util.spec_from_file_location("codebase.gan", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["codebase.gan"] = codebase.gan = module
    spec.loader.exec_module(module)
    collect = Collect()
    pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", folder, folder + "/tests/test_losses.py"],
                plugins=[collect])
    found[label] = collect.failed
print("RESULTS " + json.dumps(found))
"""


def _starter(folder, hints="handout"):
    path = folder / "starter.zip"
    handout.build(path, hints=hints)
    with zipfile.ZipFile(path) as zf:
        zf.extractall(folder)
    return folder / handout.TOP


def _run(folder, sources: dict[str, str]) -> dict[str, dict[str, str]]:
    listing = folder / "sources.json"
    listing.write_text(json.dumps(sources))
    done = subprocess.run([sys.executable, "-c", DRIVER, str(folder), str(listing)], capture_output=True, text=True,
                          timeout=600, cwd=folder)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
    assert lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULTS "):])


@pytest.fixture(scope="module")
def public(tmp_path_factory):
    """{label: {failed test: message}} for the reference, each variant and each mutant, at the default hint level."""
    work = tmp_path_factory.mktemp("public")
    folder = _starter(work)
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
        sources[label] = str(path)
    return folder, _run(folder, sources)


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
def test_the_hint_level_of_the_starter_sets_what_the_checks_say(tmp_path, hints):
    folder = _starter(tmp_path, hints)
    checks = (folder / "tests" / "test_losses.py").read_text()
    assert f'HINTS = "{hints}"' in checks
    # pytest shows a failing test's source: below full, no recipe may stand in the file at all
    assert bool([code for code in ("create_graph", "(B, 1, 1, 1)", "torch.randn(B") if code in checks]) == (hints == "full")
    reference = (ROOT / "codebase" / "gan.py").read_text()
    mutant = next(m for m in mutants.MUTANTS if m.slug == "alpha_drawn_once_per_batch")
    (tmp_path / "mutant.py").write_text(mutants.apply(reference, mutant))
    messages = " ".join(_run(folder, {"mutant": str(tmp_path / "mutant.py")})["mutant"].values())
    assert "every sample has the same alpha" in messages
    assert ("(B, 1, 1, 1)" in messages) == (hints == "full")
    assert ("U[0, 1]" in messages) == (hints != "none")  # none: only what the check saw
