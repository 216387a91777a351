"""autograder.zip and a stand-in for Gradescope: a temporary root laid out as /autograder, run_autograder run as
Gradescope runs it, results.json read back."""
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from grading import autograder_zip
from grading.submission import RUNS
from tests import world_python
from tests.conftest import ROOT, UNJUDGED

pytestmark = pytest.mark.xdist_group("autograder")  # one worker runs the module: its tests share its autograder.zip

REFERENCE = (ROOT / "codebase" / "gan.py").read_text()
TOP_FIELDS = {"score", "execution_time", "output", "output_format", "visibility", "stdout_visibility", "tests"}
TEST_FIELDS = {"name", "number", "score", "max_score", "status", "output", "output_format", "visibility"}


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (302, 302)).save(buffer, "PNG")
    return buffer.getvalue()


def _files(gan: str) -> dict[str, bytes]:
    return {"codebase/gan.py": gan.encode(), **{f"{run}/fake_0500.png": _png() for run in RUNS.values()}}


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    path = tmp_path_factory.mktemp("build") / "autograder.zip"
    autograder_zip.main(["-o", str(path), "--after-due-date", "4.5", "--timeout", "60"])
    return path


def _root(tmp_path, built_zip, files: dict[str, bytes], as_zip: bool = False, **config):
    """A Gradescope-like root: source/ unzipped from autograder.zip (its config updated with ``config``),
    submission/ as the student uploaded it."""
    root = tmp_path / "autograder"
    with zipfile.ZipFile(built_zip) as zf:
        zf.extractall(root / "source")
    if config:
        path = root / "source" / "autograder_config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    (root / "submission").mkdir()
    if as_zip:
        with zipfile.ZipFile(root / "submission" / "hw3.zip", "w") as zf:
            for name, content in files.items():
                zf.writestr(name, content)
    else:
        for name, content in files.items():
            (root / "submission" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "submission" / name).write_bytes(content)
    return root


def _run(root: Path, prefix: list[str] = (), **env) -> tuple[dict, float]:
    start = time.monotonic()
    subprocess.run([*prefix, "bash", str(root / "source" / "run_autograder")], check=True, timeout=300,
                   stdout=subprocess.DEVNULL, env={**os.environ, "AUTOGRADER_ROOT": str(root),
                                                   "GRADER_PYTHON": sys.executable, **env})
    results = json.loads((root / "results" / "results.json").read_text())
    return results, time.monotonic() - start


def _assert_complete(results: dict) -> None:
    assert TOP_FIELDS <= set(results) and results["tests"]
    assert all(TEST_FIELDS - ({"status"} if not test["max_score"] else set()) <= set(test) for test in results["tests"])
    assert results["output_format"] == "text" and all(t["output_format"] == "text" for t in results["tests"])


def test_the_zip_holds_what_grading_needs_and_no_solution(built_zip, tmp_path):
    with zipfile.ZipFile(built_zip) as zf:
        names = zf.namelist()
        modes = {info.filename: info.external_attr >> 16 for info in zf.infolist()}
        setup = zf.read("setup.sh").decode()
    assert {"setup.sh", "run_autograder", "grading/grade.py", "grading/checks.py", "grading/sandbox/modes.py",
            "grading/child/harness.py", "grading/child/confine.py"} <= set(names)
    assert not [n for n in names if n == "codebase/gan.py" or n.startswith(("tests/", "docs/")) or "variant" in n]
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    assert not re.search(r"@[A-Z]+@", setup) and "torch==" in setup and "bubblewrap" in setup  # pins filled
    subprocess.run(["bash", "-n", "-c", setup], check=True)  # the network steps themselves cannot run here
    again = tmp_path / "again.zip"
    autograder_zip.main(["-o", str(again), "--after-due-date", "4.5", "--timeout", "60"])
    assert again.read_bytes() == built_zip.read_bytes()  # deterministic


def test_the_reference_scores_full_marks_from_an_upload_of_several_files(tmp_path, built_zip):
    # hw3.zip in a folder, beside a gan.py (the upload layouts, gan.py alone among them, are read in
    # tests/test_submission.py); the default configuration: one problem at a time
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        for name, content in _files(REFERENCE).items():
            zf.writestr(f"hw3/{name}", content)
    root = _root(tmp_path, built_zip, {"gan.py": REFERENCE.encode(), "outer/hw3.zip": inner.getvalue()})
    results, seconds = _run(root, **UNJUDGED)
    _assert_complete(results)
    assert results["score"] == 35, results["output"]
    after = {t["number"].rsplit(".", 1)[0] for t in results["tests"] if t["visibility"] == "after_due_date"}
    assert after == {"4.5"} and results["stdout_visibility"] == "hidden"
    # Before the due date no text a student sees tells 4.5's points: the score line counts the visible checks.
    assert results["output"].startswith("Score on the checks shown now: 20 / 20 (the checks of 4.5 are shown")
    assert "sandbox" not in results["output"]
    assert not os.stat(root / "source").st_mode & 0o077  # private to root before student code ran


def test_the_autograder_installs_what_students_can_import(built_zip):
    with zipfile.ZipFile(built_zip) as zf:
        setup, requirements = zf.read("setup.sh").decode(), zf.read("requirements.txt").decode()
        pins = dict(line.split("==") for line in zf.read("constraints.txt").decode().split())
    assert requirements == (ROOT / "requirements.txt").read_text()  # the starter's own
    names = autograder_zip.requirement_names(requirements)
    assert {"torch", "torchvision", "matplotlib", "tqdm", "torchmetrics"} <= set(names) == set(pins)
    assert all(pins[name] == importlib.metadata.version(name).split("+")[0] for name in names)
    assert '-r "$(dirname "$0")/requirements.txt" -c "$(dirname "$0")/constraints.txt"' in setup
    assert f"torchvision=={pins['torchvision']}" in setup  # from the same index as torch


def test_a_hanging_submission_gets_complete_results_that_name_the_time_limit(tmp_path, built_zip):
    source = REFERENCE + '\nprint("<b>}\\"\\n", "\\x1b[31m", flush=True)\nimport time\nwhile True:\n    time.sleep(1)\n'
    # 20 s: on a busy machine (the suite's workers) three children's imports of torch at once must fit in the limit,
    # so that the print above shows; they wait asleep, leaving the cores to the tests beside them
    root = _root(tmp_path, built_zip, _files(source), timeout=20, parallel=3)
    results, _ = _run(root, **UNJUDGED)  # (that the three wait out one limit together: tests/test_batch.py, 20 s against 60 s)
    _assert_complete(results)
    assert results["score"] == 0
    text = (root / "results" / "results.json").read_text()
    assert '<b>}"' in results["tests"][0]["output"] and "\x1b" not in text and "\\u001b" not in text
    assert all("time limit of 20 s" in t["output"] for t in results["tests"] if t["max_score"] > 0)
    assert 'gan.py", line' in results["tests"][0]["output"]  # where the code was at the limit


def test_results_are_complete_when_the_grader_cannot_start(tmp_path, built_zip):
    root = _root(tmp_path, built_zip, _files(REFERENCE))
    results, _ = _run(root, GRADER_PYTHON="/bin/false")
    assert results["score"] == 0 and "could not start" in results["output"]
    (root / "results" / "results.json").unlink()
    results, _ = _run(root, GRADER_SANDBOX="no-such-mode")  # the grader starts, then fails
    _assert_complete(results)
    assert results["score"] == 0 and "the grading failed, not your code" in results["output"]
    assert results["extra_data"]["status"] == "grading failed"


def test_in_user_mode_student_code_reads_no_source_and_writes_no_results(built_zip, request, deployment):
    prefix = world_python.command_prefix()
    source = REFERENCE + """
import os
for path in ("/autograder-root/source/grading/checks.py", "/autograder-root/results/results.json"):
    try:
        open(path, "rb").close()
        raise SystemExit("read " + path)
    except OSError:
        pass
try:
    open("/autograder-root/results/evil.json", "w").close()
    raise SystemExit("wrote results")
except OSError:
    pass
"""
    base = Path(tempfile.mkdtemp())  # traversable by every user, as /autograder is: only the chmods protect
    base.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(base))
    root = _root(base, built_zip, {}, parallel=3)
    for folder in (root / "source", *(root / "source").rglob("*")):
        folder.chmod(0o755 if folder.is_dir() else 0o644)  # as unzipped with a umask of 022
    source = source.replace("/autograder-root", str(root))
    for name, content in _files(source).items():
        (root / "submission" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "submission" / name).write_bytes(content)
    results, _ = _run(root, prefix, GRADER_SANDBOX="user", **deployment.env)  # the grids' reference features
    _assert_complete(results)
    assert results["score"] == 35, [t["output"] for t in results["tests"] if t["status"] == "failed"][:1]
    assert results["extra_data"]["sandbox"].startswith("user") and not (root / "results" / "evil.json").exists()


def test_one_time_limit_by_default_everywhere(capsys):
    from grading import grade
    from grading import grade_class
    from grading import gradescope, scoring

    defaults = set()
    for main in (grade.main, grade_class.main):
        with pytest.raises(SystemExit):
            main(["--help"])
        defaults.add(re.search(r"per problem \(default: ([\d.]+)\)", capsys.readouterr().out)[1])
    assert defaults == {"120.0"}  # the limit docs/grading.md and the starter's README promise: two minutes
    assert gradescope.DEFAULTS["timeout"] == autograder_zip.DEFAULTS["timeout"] == scoring.DEFAULT_TIMEOUT == 120


def test_the_hint_level_is_the_courses_and_chosen_when_the_autograder_is_built(tmp_path, built_zip):
    with zipfile.ZipFile(built_zip) as zf:
        assert json.loads(zf.read("autograder_config.json"))["hints"] == "handout"
    built = tmp_path / "none.zip"
    autograder_zip.main(["-o", str(built), "--hints", "none"])
    with zipfile.ZipFile(built) as zf:
        assert json.loads(zf.read("autograder_config.json"))["hints"] == "none"
    from tests.grading import mutants

    mutant = next(m for m in mutants.MUTANTS if m.slug == "alpha_drawn_once_per_batch")
    results, _ = _run(_root(tmp_path, built, _files(mutants.apply(REFERENCE, mutant)), parallel=3), **UNJUDGED)
    said = {t["name"]: t["output"] for t in results["tests"]}
    alpha = said["4.5 loss_wasserstein_gp: interpolates with one alpha ~ U[0, 1] per sample"]
    assert alpha.startswith("every sample has the same alpha") and "U[0, 1]" not in alpha and ":" not in alpha
    assert results["score"] == 35 - 3
