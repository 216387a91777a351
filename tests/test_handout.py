"""handout.py: stubs replace the solution regions, the starter runs, and the grading suite fails each stub."""
import ast
import re
import subprocess
import sys
import zipfile

import pytest

from grading import handout
from tests.conftest import ROOT
from synthetic import make_dataset
from grading import checks
from grading.child import probes

pytestmark = pytest.mark.xdist_group("handout")  # one worker runs the module: its tests share its starter

pytest_plugins = ["pytester"]

SOURCE = '''\
def kept():
    return 1


class Model:
    def forward(self, x):
        """Docstring stays."""
        # BEGIN SOLUTION: multiply by two
        y = 2 * x
        return y
        # END SOLUTION


def other():
    # BEGIN SOLUTION
    return 3
    # END SOLUTION
'''


@pytest.fixture(scope="module")
def starter(tmp_path_factory):
    """The starter ZIP built from the project, and the folder it unzips into."""
    folder = tmp_path_factory.mktemp("starter")
    path = folder / "hw3_starter.zip"
    handout.main(["-o", str(path)])
    with zipfile.ZipFile(path) as zf:
        zf.extractall(folder)
        for info in zf.infolist():  # extractall drops permission bits
            (folder / info.filename).chmod((info.external_attr >> 16) & 0o777)
    return path, folder / handout.TOP


def test_stubs_replace_each_region_and_keep_everything_else():
    namespace = {}
    exec(handout.stub_solutions(SOURCE, hints="full"), namespace)
    assert namespace["kept"]() == 1
    with pytest.raises(NotImplementedError, match=r"^forward: multiply by two$"):
        namespace["Model"]().forward(1)
    with pytest.raises(NotImplementedError, match=r"^other: write this part$"):
        namespace["other"]()
    assert "Docstring stays" in handout.stub_solutions(SOURCE)
    assert "2 * x" not in handout.stub_solutions(SOURCE)


@pytest.mark.parametrize("broken, problem", [
    ("# END SOLUTION\n", "END SOLUTION without BEGIN"),
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n", "inside the region opened at line 1"),
    ("x = 1\n# BEGIN SOLUTION\nx = 2\n", "<source>:2: BEGIN SOLUTION is never closed"),
])
def test_unbalanced_markers_are_errors(broken, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        handout.stub_solutions(broken)


def test_starter_holds_the_student_files_without_solutions(starter):
    path, folder = starter
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == sorted(f"hw3/{name}" for name in handout.STARTER)
    solution = (ROOT / "codebase" / "gan.py").read_text()
    regions = re.findall(r"# BEGIN SOLUTION.*?\n(.*?)# END SOLUTION", solution, flags=re.S)
    stubbed = (folder / "codebase" / "gan.py").read_text()
    assert len(regions) == stubbed.count("raise NotImplementedError(") == 4
    for line in filter(str.strip, "".join(regions).splitlines()):
        assert line.strip() not in stubbed, line
    assert "SOLUTION" not in stubbed
    assert (folder / "make_submission.sh").stat().st_mode & 0o111
    second = path.with_name("again.zip")
    handout.build(second)
    assert second.read_bytes() == path.read_bytes()  # deterministic


def test_starter_imports_and_its_run_scripts_start(starter):
    _, folder = starter
    program = """
import runpy, sys
import codebase.data, codebase.gan, codebase.network, codebase.train
for script in ("run_gan.py", "run_conditional_gan.py"):
    sys.argv = [script, "--help"]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as stop:
        assert stop.code in (0, None), (script, stop.code)
"""
    done = subprocess.run([sys.executable, "-c", program], cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("usage:") == 2


HANDOUT_TASKS = {"loss_nonsaturating": "1.2", "conditional_loss_nonsaturating": "3.2", "loss_wasserstein_gp": "4.5",
                 "loss_minimax": "1.1"}


def test_starter_poses_exactly_the_handouts_tasks(starter):
    _, folder = starter
    stubbed = probes.load_module(folder / "codebase" / "gan.py", "starter_gan_tasks")
    functions = {name for name, value in vars(stubbed).items()
                 if callable(value) and getattr(value, "__module__", None) == "starter_gan_tasks"}
    assert functions == set(HANDOUT_TASKS)
    for name in HANDOUT_TASKS:
        args = (None, None, None, None) if name.startswith("conditional") else (None, None, None)
        with pytest.raises(NotImplementedError, match=f"^{name}: "):
            getattr(stubbed, name)(*args, device="cpu")
    assert "optional" in stubbed.loss_minimax.__doc__ and "not graded" in stubbed.loss_minimax.__doc__


def test_starter_scripts_say_which_stub_is_unwritten_and_write_nothing(starter, tmp_path):
    _, folder = starter
    make_dataset(tmp_path / "data", n_train=64, n_test=10)
    program = """
import runpy, sys
data = sys.argv[1]
for argv in (["run_gan.py"], ["run_gan.py", "--loss_type", "wasserstein_gp"], ["run_conditional_gan.py"]):
    sys.argv = argv + ["--data_dir", data, "--device", "cpu"]
    try:
        runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as stop:
        print(stop.code)
"""
    done = subprocess.run([sys.executable, "-c", program, str(tmp_path / "data")], cwd=folder, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.splitlines() == [
        "error: codebase/gan.py: loss_nonsaturating is not written yet (handout 1.2)",
        "error: codebase/gan.py: loss_wasserstein_gp is not written yet (handout 4.5)",
        "error: codebase/gan.py: conditional_loss_nonsaturating is not written yet (handout 3.2)"], done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    assert not list(folder.glob("out_*"))


def test_starter_public_tests_fail_on_the_stubs(starter):
    """As a student first runs them (the reference and every correct variant pass them: tests/test_public_checks.py)."""
    _, folder = starter
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_losses.py"]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "NotImplementedError" in done.stdout and " passed" not in done.stdout, done.stdout
    assert "skipped" in done.stdout  # loss_minimax is optional


def test_grading_suite_fails_each_stub_with_its_hint(starter):
    _, folder = starter
    stubbed = folder / "codebase" / "gan.py"
    hints = [ast.literal_eval(text) for text in re.findall(r"raise NotImplementedError\((.*)\)", stubbed.read_text())]
    assert len(hints) == 4
    module = probes.load_module(stubbed, "starter_gan")
    for number in checks.PROBLEMS:
        for check, message in checks.evaluate(number, probes.run(module, number)):
            assert message is not None, f"{number} {check.name} passed on the starter"
            assert "raised NotImplementedError: " in message and any(hint in message for hint in hints), message


def test_pytest_with_gan_option_reports_the_stubs_and_zero_points(starter, pytester):
    _, folder = starter
    result = pytester.runpytest_inprocess(str(ROOT / "tests" / "grading" / "test_problems.py"), "--rootdir", str(ROOT),
                                          "--gan", str(folder / "codebase" / "gan.py"), "-p", "no:cacheprovider",
                                          "-n", "0")  # in this process, not in workers of pytest.ini's
    cases = sum(len(problem.checks) for problem in checks.PROBLEMS.values())
    result.assert_outcomes(passed=1, failed=cases)  # the test of the points table passes
    result.stdout.fnmatch_lines(["*raised NotImplementedError: loss_nonsaturating: *",
                                 "grading points for *: 1.2: 0/10, 3.2: 0/10, 4.5: 0/15; total 0/35"])


def test_a_fake_network_names_what_the_students_code_asked_for():
    from tests.test_losses import FirstPixel, FixedG

    g, d = FixedG([0.0]), FirstPixel()
    assert (g.dim_z, g.num_classes, d.num_classes) == (8, 10, 10)
    with pytest.raises(AttributeError, match="asked the test's FixedG for 'n_classes'.*g.num_classes"):
        g.n_classes


@pytest.mark.parametrize("hints", handout.HINTS)
def test_hints_are_chosen_by_the_course_and_the_default_never_says_how(hints):
    stubbed = handout.stub_solutions((ROOT / "codebase" / "gan.py").read_text(), "gan.py", hints)
    said = " ".join(ast.literal_eval(t) for t in re.findall(r"raise NotImplementedError\((.*)\)", stubbed))
    how = ("create_graph", "torch.autograd.grad", "F.softplus", "(B, 1, 1, 1)", "never log(sigmoid")
    if hints == "full":
        assert all(word in said for word in how)
    else:
        assert not any(word in said for word in how), said
    if hints == "handout":  # what the handout states: its formulas, the shapes, what to return
        assert "x_hat = alpha x_1 + (1 - alpha) x_2" in said and "lambda = 10" in said and "(B, g.dim_z)" in said
        assert said.count("return (d_loss, g_loss)") == 4
    if hints == "none":
        assert said.count("write this part") == 4
    assert "HANDOUT" not in stubbed and "SOLUTION" not in stubbed


def test_the_starter_readme_lists_every_check_with_its_points():
    text = (ROOT / "docs" / "starter_README.md").read_text()
    rows = re.findall(r"^\| (?:(\d\.\d) `\w+`)? \| ([^|*]+?) \| (\d+) \|$", text, flags=re.M)
    listed, problem = [], None
    for number, name, points in rows:
        problem = number or problem
        listed.append((problem, name, float(points)))
    assert listed == [(n, c.name, c.points) for n, p in checks.PROBLEMS.items() for c in p.checks]


def test_every_readme_section_a_message_names_exists():
    """Help texts and messages name README sections; each must exist in the README shipped beside the code."""
    pointer = re.compile(r"""README's \\?"([^"\\]+)\\?" section""")
    readmes = {"repository": (ROOT / "README.md").read_text() + (ROOT / "docs" / "engineering.md").read_text(),
               "starter": (ROOT / "docs" / "starter_README.md").read_text()}  # the repository's: and its notes
    sources = {p.relative_to(ROOT).as_posix(): p.read_text() for p in ROOT.glob("**/*.py") if ".git" not in p.parts}
    sources.update({name: (ROOT / name).read_text() for name in ("make_submission.sh", "setup.sh")})
    found = 0
    for name, source in sources.items():
        for section in pointer.findall(source):
            found += 1
            shipped = ["repository"] + (["starter"] if name in handout.STARTER else [])
            for readme in shipped:
                assert re.search(rf"^#+ {re.escape(section)}$", readmes[readme], flags=re.M), \
                    f"{name} points to the {readme} README's {section!r} section, which does not exist"
    assert found >= 2


# What the starter's files may name without holding it: the files a run or make_submission.sh writes.
OUTPUTS = {"metrics.json", "fake_0050.png", "latest_x3.png", "real.png", "losses.csv", "losses.png", "hw3.zip",
           "checkpoint.pt", "config.json", "out_wasserstein_gp/fake_0937.png", "run_dir/checkpoint.pt",
           "out_dir/metrics.json", "args.json"}
INSTRUCTORS = re.compile(r"\bgit\b|bubblewrap|chromium|pyseccomp|bench/|docs/|\bgrade(?:_all)?\.py|train_classifier\.py|codebase\.train_classifier"
                         r"|make_handout|make_autograder|-m grading\b|\bgrading/|--grader|tests/grading|theory/"
                         r"|this repository", flags=re.I)


def test_the_starter_names_only_files_and_commands_it_holds(starter):
    _, folder = starter
    held = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    path = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]+\.(?:py|sh|md|pt|json|csv|txt|zip|png))\b")
    found = []
    for name in sorted(held):
        if name.endswith(".pt"):
            continue
        text = (folder / name).read_text()
        for number, line in enumerate(text.splitlines(), 1):
            for ref in path.findall(line):
                if ref not in held and ref not in OUTPUTS and not any(h.endswith("/" + ref) for h in held):
                    found.append(f"{name}:{number}: {ref}")
            found += [f"{name}:{number}: {m}" for m in INSTRUCTORS.findall(line)]
    assert found == []


def test_the_starters_setup_takes_no_grader_option(starter):
    _, folder = starter
    text = (folder / "setup.sh").read_text()
    assert "GRADER" not in text and "bwrap" not in text
    done = subprocess.run(["bash", "setup.sh", "--grader"], cwd=folder, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown option --grader" in done.stderr
