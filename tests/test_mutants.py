"""The mutant catalogue: each known-wrong gan.py fails the check aimed at its mistake; correct ones pass them all."""
import pytest

from tests.conftest import ROOT
from grading import checks
from grading.child import probes
from tests.grading import mutants

REFERENCE = ROOT / "codebase" / "gan.py"
CORRECT = [REFERENCE, *(ROOT / "tests" / "grading" / name for name in (
    "variant_gan.py", "variant_concat_gan.py", "variant_func_gan.py", "variant_loop_gan.py"))]

pytestmark = pytest.mark.usefixtures("one_thread")


# Code a message must not spell out below the "full" hint level: the recipe of a correct solution.
CODE = ("torch.", "F.", "create_graph", "flatten(", "norm(dim", "(B, 1, 1, 1)", ".detach()", ".sum()", ".mean()",
        "softplus", "logsigmoid", "randn", "rand(", "randint")


def _failures(path, name: str, problem: str, hints: str = "handout") -> dict[str, str]:
    module = probes.load_module(path, name)
    return {check.name: message for check, message in checks.evaluate(problem, probes.run(module, problem), hints)
            if message}


def test_catalogue_has_a_dozen_distinct_mutants_each_with_its_message():
    assert len({m.slug for m in mutants.MUTANTS}) == len(mutants.MUTANTS) >= 12
    assert all(m.says for m in mutants.MUTANTS)


@pytest.mark.parametrize("mutant", mutants.MUTANTS, ids=lambda m: m.slug)
def test_mutant_fails_its_check(mutant, tmp_path):
    path = tmp_path / "gan.py"
    path.write_text(mutants.apply(REFERENCE.read_text(), mutant))
    problem, check = mutant.caught_by.split("/")
    assert check in {c.name for c in checks.PROBLEMS[problem].checks}
    module = probes.load_module(path, f"mutant_{mutant.slug}")
    outputs = probes.run(module, problem)
    said = {hints: {c.name: m for c, m in checks.evaluate(problem, outputs, hints) if m} for hints in checks.HINTS}
    failures = said["handout"]
    assert check in failures, f"{mutant.name!r} passed {mutant.caught_by}"
    assert mutant.says in failures[check], f"{mutant.name!r}: {failures[check]!r} does not say {mutant.says!r}"
    assert said["none"].keys() == said["full"].keys() == failures.keys()
    for name, message in failures.items():
        assert not [code for code in CODE if code in message], f"{mutant.name!r}: {message!r} spells out code"
        seen = said["none"][name]  # what the check saw; each level says more after it
        assert message.startswith(seen) and said["full"][name].startswith(seen) and len(message) >= len(seen)


@pytest.mark.parametrize("path", CORRECT, ids=lambda p: p.name)
@pytest.mark.parametrize("problem", checks.PROBLEMS)
def test_correct_implementation_passes_every_check(path, problem):
    assert _failures(path, f"correct_{path.stem}", problem) == {}


def test_an_autograd_error_names_the_line_of_gan_py_that_changed_a_tensor_in_place(tmp_path):
    source = REFERENCE.read_text().replace(
        "    d_loss = F.softplus(-d(x_real)).mean() + F.softplus(d(x_fake.detach())).mean()  # -log D(x) - log(1 - D(G(z)))\n",
        "    p = torch.sigmoid(d(x_real))\n    p.mul_(1.0)\n    d_loss = -torch.log(p).mean() + F.softplus(d(x_fake.detach())).mean()\n", 1)
    line = next(n for n, text in enumerate(source.splitlines(), 1) if "p.mul_(1.0)" in text)
    (tmp_path / "gan.py").write_text(source)
    failures = _failures(tmp_path / "gan.py", "inplace_autograd", "1.2")
    said = failures["d_loss value"]
    assert said.startswith("loss_nonsaturating raised RuntimeError: one of the variables needed for gradient "
                           "computation has been modified by an inplace operation")
    assert f"gan.py line {line} changes a tensor in place" in said and "graph.py" not in said and "Hint:" not in said


def test_no_probe_runs_a_function_at_a_larger_batch_than_training(tmp_path):
    """Correct code that trains at batch 64 (a per-sample loop, say) needs no more memory in the grader: a
    solution that refuses larger batches still gets every check."""
    guard = ("\n\ndef _at_most_64(function):\n    def checked(g, d, x_real, *args, **kwargs):\n"
             "        if len(x_real) > 64:\n            raise MemoryError(f'batch {len(x_real)}')\n"
             "        return function(g, d, x_real, *args, **kwargs)\n    return checked\n\n\n"
             + "".join(f"{name} = _at_most_64({name})\n" for name in probes.FUNCTIONS.values()))
    (tmp_path / "gan.py").write_text(REFERENCE.read_text() + guard)
    for problem in checks.PROBLEMS:
        assert _failures(tmp_path / "gan.py", f"at_most_64_{problem.replace('.', '_')}", problem) == {}
