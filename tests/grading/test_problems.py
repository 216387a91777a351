"""The grading suite: each check of handout problems 1.2, 3.2 and 4.5, with its points, on the --gan file.

    pytest tests/grading                          # the project's codebase/gan.py
    pytest tests/grading --gan path/to/gan.py     # any other implementation
"""
import pytest

from grading import checks
from grading.child import probes

CASES = [pytest.param(problem, check, id=f"{problem.number}-{check.slug}",
                      marks=pytest.mark.points(problem.number, check.points))
         for problem in checks.PROBLEMS.values() for check in problem.checks]


@pytest.fixture(scope="module")
def outputs(gan, one_thread):
    return {number: probes.run(gan, number) for number in checks.PROBLEMS}


@pytest.mark.parametrize("problem, check", CASES)
def test_check(problem, check, outputs):
    check.run(outputs[problem.number])


def test_points_match_the_handout():
    assert {number: problem.points for number, problem in checks.PROBLEMS.items()} == {"1.2": 10, "3.2": 10, "4.5": 15}
