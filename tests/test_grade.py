"""python -m grading grade against hostile submissions: the affected part gets 0, the rest is scored, and grading ends in time.

Hostile gan.py files are the reference with some functions redefined at the end. Problems run in parallel
children, so one grading costs about one child: the tests that start children share few gradings.
"""
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from grading import grade
from grading import autograder_zip
from grading import checks, sandbox, scoring, submission
from tests import world_python
from tests.conftest import ROOT, GRADE

REFERENCE = (ROOT / "codebase" / "gan.py").read_text()
VARIANT = (ROOT / "tests" / "grading" / "variant_gan.py").read_text()
FULL = {"1.2": 10.0, "3.2": 10.0, "4.5": 15.0}


def _png(width: int = 302, height: int = 302) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 80, 120)).save(buffer, "PNG")
    return buffer.getvalue()


GRIDS = {f"{run}/fake_0500.png": _png() for run in submission.RUNS.values()}
needs_bwrap = pytest.mark.skipif(not sandbox.bubblewrap_version(), reason="bubblewrap cannot create namespaces here")


def _zip(path, members: dict, symlinks: tuple = (), encrypted: bool = False):
    """A ZIP of members {name: bytes or str}; names in symlinks are symbolic links; all encrypted if asked."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o120777 if name in symlinks else 0o100644) << 16
            zf.writestr(info, content)
    if encrypted:  # zipfile cannot encrypt: set the flag in each local and central header
        data = bytearray(path.read_bytes())
        with zipfile.ZipFile(path) as zf:
            offsets, central = [info.header_offset for info in zf.infolist()], zf.start_dir
        for offset in offsets:
            data[offset + 6] |= 1
        while data[central:central + 4] == b"PK\x01\x02":
            data[central + 8] |= 1
            central += 46 + sum(struct.unpack("<HHH", data[central + 28:central + 34]))
        path.write_bytes(data)
    return path


def _by_problem(results: dict) -> tuple[dict, dict]:
    """(points per problem, outputs per problem) of results.json."""
    points, outputs = {}, {}
    for test in results["tests"]:
        problem = test["number"].rsplit(".", 1)[0]
        points[problem] = points.get(problem, 0.0) + test["score"]
        outputs[problem] = outputs.get(problem, "") + test["output"] + "\n"
    return points, outputs


def _grids_pass(results: dict) -> list[str]:
    return ["passed" if t["output"] == "a valid PNG of sane size" else "failed" for t in results["tests"]
            if "sample grid out_" in t["name"]]


def _assert_complete(results: dict) -> None:
    json.dumps(results)
    assert len(results["tests"]) == sum(len(p.checks) + 2 for p in checks.PROBLEMS.values())
    for test in results["tests"]:
        assert set(test) == {"name", "number", "score", "max_score", "output", "status"}
        assert 0 <= test["score"] <= test["max_score"] and test["status"] in ("passed", "failed")
        if test["max_score"]:
            assert (test["status"] == "passed") == (test["score"] == test["max_score"])
    assert results["score"] == sum(test["score"] for test in results["tests"])


def test_information_checks_show_failed_when_they_fail():
    """Gradescope colours a test by its status: a 0-point grid check that says "no sample grid" must be red."""
    from grading import scoring

    grids = {"1.2": None, "3.2": "no sample grid in out_nonsaturating_conditional/", "4.5": None}
    judged = {"1.2": {"healthy": True, "realism": 0.7, "classes": 9.8, "copies": 0},
              "3.2": "not judged: there is no valid grid", "4.5": "not judged on this grading machine (no data)"}
    results = scoring.results(dict.fromkeys(grids, "gan.py: missing"), grids, [], 0.0, judged)
    status = {t["name"].split(" (")[0]: t["status"] for t in results["tests"] if not t["max_score"]}
    assert status == {"1.2 sample grid out_nonsaturating/fake_<step>.png": "passed",
                      "1.2 sample grid judged by the classifier": "passed",
                      "3.2 sample grid out_nonsaturating_conditional/fake_<step>.png": "failed",
                      "3.2 sample grid judged by the classifier": "failed",
                      "4.5 sample grid out_wasserstein_gp/fake_<step>.png": "passed",
                      "4.5 sample grid judged by the classifier": "passed"}  # the grader's lack, not the grid's


# ---- Reading the ZIP (no child processes) ---------------------------------------------------------------------


def test_reader_keeps_the_allowlist_and_never_writes_the_rest(tmp_path):
    members = {"codebase/gan.py": REFERENCE, **GRIDS, "conftest.py": "x", "pytest.ini": "[pytest]",
               "sitecustomize.py": "x", "codebase/": ""}
    sub = submission.read_submission(_zip(tmp_path / "hw3.zip", members))
    assert set(sub.members) == {"codebase/gan.py", *GRIDS}
    assert sub.members["codebase/gan.py"] == REFERENCE.encode()
    assert sub.notes == [] and "conftest.py" in sub.listed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hw3.zip"]


@pytest.mark.parametrize("name, flags, reason", [
    ("../../codebase/gan.py", {}, "unsafe name"),
    ("/codebase/gan.py", {}, "unsafe name"),
    ("codebase/../codebase/gan.py", {}, "unsafe name"),
    ("codebase/gan.py", {"symlinks": ("codebase/gan.py",)}, "symbolic link"),
    ("codebase/gan.py", {"encrypted": True}, "encrypted"),
])
def test_reader_rejects_unsafe_members(tmp_path, name, flags, reason):
    sub = submission.read_submission(_zip(tmp_path / "hw3.zip", {name: "/etc/passwd"}, **flags))
    assert not isinstance(sub.members.get("codebase/gan.py"), bytes)
    assert reason in sub.members["codebase/gan.py"]


def test_reader_rejects_duplicates_and_zip_bombs(tmp_path):
    path = _zip(tmp_path / "hw3.zip", {"codebase/gan.py": REFERENCE})
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("codebase/gan.py", "print('second copy')")
        zf.writestr("out_nonsaturating/fake_0500.png", bytes(100 << 20))  # 100 MB of zeros, 100 KB compressed
    assert path.stat().st_size < 1 << 20
    sub = submission.read_submission(path)
    assert "appears 2 times" in sub.members["codebase/gan.py"]
    assert "over the" in sub.members["out_nonsaturating/fake_0500.png"]


def test_reader_caps_the_names_it_lists_and_survives_non_zips(tmp_path, monkeypatch):
    monkeypatch.setattr(submission, "MAX_LISTED", 100)
    many = _zip(tmp_path / "many.zip", {f"f{i}.txt": "" for i in range(101)})
    assert "over 100 files: not graded" in submission.read_submission(many).fatal
    (tmp_path / "folder").mkdir()
    for i in range(101):
        (tmp_path / "folder" / f"f{i}.txt").write_text("")
    assert "over 100 files: not graded" in submission.read_submission(tmp_path / "folder").fatal
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    assert "cannot read the submission as a ZIP" in submission.read_submission(junk).fatal


@pytest.mark.parametrize("data, problem", [
    (_png(), None),
    (_png(10, 10), "10x10 pixels"),
    (_png(4000, 30), "4000x30 pixels"),
    (_png()[:200], "not a valid PNG"),
    (b"\x89PNG\r\n\x1a\n" + bytes(50), "not a valid PNG"),
    (b"GIF89a", "not a valid PNG"),
])
def test_grids_must_be_valid_pngs_of_sane_size(data, problem):
    verdict = submission.check_grid(("out_nonsaturating/fake_0500.png", data), "out_nonsaturating")
    assert verdict is None if problem is None else problem in verdict


def test_the_final_grid_is_the_highest_step(tmp_path):
    members = {"out_nonsaturating/fake_0900.png": b"broken", "out_nonsaturating/fake_1000.png": _png()}
    sub = submission.read_submission(_zip(tmp_path / "hw3.zip", members))
    assert sub.grid("out_nonsaturating") == ("out_nonsaturating/fake_1000.png", _png())
    assert sub.grid("out_wasserstein_gp") is None


def test_cli_writes_complete_results_for_a_submission_without_gan_py(tmp_path):
    out = tmp_path / "results.json"
    grade.main([str(_zip(tmp_path / "hw3.zip", GRIDS)), "-o", str(out)])
    results = json.loads(out.read_text())
    _assert_complete(results)
    points, outputs = _by_problem(results)
    assert points == {"1.2": 0.0, "3.2": 0.0, "4.5": 0.0}
    assert all("no gan.py in the ZIP (found: out_" in text for text in outputs.values())
    assert _grids_pass(results) == ["passed"] * 3


def test_grids_are_judged_weighed_flagged_and_kept(tmp_path):
    from codebase.data import load_fashion_mnist
    from codebase.outputs import save_grid_image

    train, _ = load_fashion_mnist("train")
    test, labels = load_fashion_mnist("test")
    columns = torch.stack([test[labels == c][:10] for c in range(10)], 1).reshape(100, 28, 28)
    noise = torch.randint(0, 256, (100, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    grids = {}
    for run, images in (("out_nonsaturating", train[:100]), ("out_nonsaturating_conditional", columns),
                        ("out_wasserstein_gp", noise)):
        save_grid_image(images.unsqueeze(1).float() / 127.5 - 1, tmp_path / "grid.png")
        grids[f"{run}/fake_0937.png"] = (tmp_path / "grid.png").read_bytes()
    with Image.open(io.BytesIO(grids["out_wasserstein_gp/fake_0937.png"])) as image:  # extras a browser would use
        extras = io.BytesIO()
        image.convert("RGBA").save(extras, "PNG", icc_profile=b"\0" * 128, pnginfo=None)
        grids["out_wasserstein_gp/fake_0937.png"] = extras.getvalue()
    out, keep = tmp_path / "results.json", tmp_path / "kept"
    grade.main([str(_zip(tmp_path / "hw3.zip", grids)), "-o", str(out), "--grid-points", "1", "--keep", str(keep)])
    results = json.loads(out.read_text())
    _assert_complete(results)
    judged = {t["number"][:3]: t for t in results["tests"] if t["name"].endswith("judged by the classifier")}
    assert {p: t["score"] for p, t in judged.items()} == {"1.2": 1.0, "3.2": 1.0, "4.5": 0.0}
    assert "healthy" in judged["3.2"]["output"] and "show their column's class" in judged["3.2"]["output"]
    assert "below what a healthy one-epoch grid reaches" in judged["4.5"]["output"]
    extra = results["extra_data"]
    assert extra["grids"]["1.2"]["copies"] == 100 and extra["grids"]["4.5"]["copies"] == 0
    assert extra["flags"] == [f"{p}: 100 of the 100 samples are real Fashion-MNIST images (or mirrored ones), not "
                              "drawn by a generator" for p in ("1.2", "3.2")]  # training and test images alike
    assert not any("real Fashion-MNIST" in t["output"] for t in results["tests"])  # the flag is for a human only
    assert sorted(p.name for p in keep.iterdir()) == ["1.2.png", "3.2.png", "4.5.png"]  # no gan.py to keep
    with Image.open(keep / "4.5.png") as kept:
        assert kept.mode == "L" and "icc_profile" not in kept.info and "transparency" not in kept.info


def test_without_fashion_mnist_grids_are_not_judged_and_weighed_grids_fail_the_grading(tmp_path):
    path = _zip(tmp_path / "hw3.zip", GRIDS)
    env = {**os.environ, "FASHION_MNIST_DIR": str(tmp_path / "nowhere")}
    done = subprocess.run([*GRADE, str(path), "-o", str(tmp_path / "r.json")],
                          env=env, capture_output=True, text=True, timeout=120)
    results = json.loads((tmp_path / "r.json").read_text())
    judged = [t["output"] for t in results["tests"] if t["name"].startswith("1.2 sample grid judged")]
    assert judged[0].startswith("not judged on this grading machine (Fashion-MNIST is not on the grading machine")
    assert results["extra_data"]["status"] == "graded" and results["extra_data"]["grids"] == {}
    done = subprocess.run([*GRADE, str(path), "-o", str(tmp_path / "r.json"),
                           "--grid-points", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == grade.GRADING_FAILED and "the grids cannot be judged here" in done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["extra_data"]["status"] == "grading failed"


# ---- Running student code (child processes) --------------------------------------------------------------------


def _grade(tmp_path, source: str, members: dict | None = None, timeout: float = 60.0, mode: str = "auto",
           **flags):
    path = _zip(tmp_path / "hw3.zip", {"codebase/gan.py": source, **GRIDS, **(members or {})}, **flags)
    sandbox.pick_mode(mode)  # the mode's probe, once per process: not part of the time a grading takes
    start = time.monotonic()
    results = scoring.grade(path, timeout=timeout, mode=mode)
    _assert_complete(results)
    return results, time.monotonic() - start


def _one_child(source: str, problem: str = "1.2", mode: str = "process", timeout: float = 60.0) -> dict | str:
    """The decoded outputs of one problem's child on ``source`` (or why there are none), for the tests about what a
    child does with a gan.py: one child in place of a grading's three."""
    sandbox.pick_mode(mode)
    raw = scoring.run_problem(problem, {**scoring.starter_package(), submission.GAN: source.encode()}, timeout, mode)
    assert not isinstance(raw, scoring.GradingFailed), raw
    return scoring.decode(raw[0] if isinstance(raw, tuple) else raw)


def _descends(pid: int, ancestor: int) -> bool:
    """Whether process ``pid`` descends from ``ancestor`` (a grader, as a subreaper, keeps its orphans)."""
    for _ in range(64):
        if pid == ancestor:
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid <= 1:
            return False
    return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"  # a zombie has already been killed
    except FileNotFoundError:
        return False


def test_endless_loops_forks_and_floods_of_output_cost_only_their_part(tmp_path):
    # process mode: the children share the host's /tmp with this test, which counts their forks there
    pids = tmp_path / "pids"
    source = REFERENCE + f"""
import os, sys, time
for _ in range(100):
    sys.stdout.write("x" * 1_000_000)  # 100 MB of prints at import

def loss_nonsaturating(*args, **kwargs):
    while True:
        pass

def conditional_loss_nonsaturating(*args, **kwargs):
    children = []
    for _ in range(8):
        pid = os.fork()
        if pid == 0:
            time.sleep(600)
            os._exit(0)
        children.append(pid)
    open({str(pids)!r}, "w").write(" ".join(map(str, children)))
    time.sleep(600)
"""
    timeout = 15.0
    results, seconds = _grade(tmp_path, source, timeout=timeout, mode="process")
    points, outputs = _by_problem(results)
    assert points == {"1.2": 0.0, "3.2": 0.0, "4.5": 15.0}
    assert "time limit of 15 s" in outputs["1.2"] and "time limit of 15 s" in outputs["3.2"]
    assert seconds < timeout + 10
    assert len(json.dumps(results)) < 40_000  # the 300 MB printed are capped
    assert "bytes of output dropped" in outputs["1.2"]
    forked = [int(pid) for pid in pids.read_text().split()]
    assert len(forked) == 8 and not any(_alive(pid) for pid in forked)


def test_crashes_missing_functions_and_a_patched_pytest_cost_only_their_part(tmp_path):
    source = REFERENCE + """
import _pytest.reports  # make pytest report every test as passed: the grader does not use pytest here
_pytest.reports.TestReport.passed = property(lambda self: True)
_pytest.reports.TestReport.failed = property(lambda self: False)

def loss_nonsaturating(g, d, x_real, *, device):  # the minimax G loss in place of the non-saturating one
    x_fake = g(torch.randn(x_real.shape[0], g.dim_z, device=device))
    d_loss = F.softplus(-d(x_real)).mean() + F.softplus(d(x_fake.detach())).mean()
    return d_loss, -F.softplus(d(x_fake)).mean()

def conditional_loss_nonsaturating(*args, **kwargs):
    import ctypes
    ctypes.string_at(0)  # segmentation fault

del loss_wasserstein_gp
"""
    results, _ = _grade(tmp_path, source)
    points, outputs = _by_problem(results)
    # 1.2 fails its g_loss and extreme-logit checks, and so gets no point for how it draws z either
    assert points == {"1.2": 4.0, "3.2": 0.0, "4.5": 0.0}
    assert "g_loss = " in outputs["1.2"]
    assert "killed by signal SIGSEGV" in outputs["3.2"]
    assert "gan.py has no function loss_wasserstein_gp" in outputs["4.5"]
    assert _grids_pass(results) == ["passed"] * 3


@pytest.mark.parametrize("source, message", [
    ("import torch\ndef loss_nonsaturating(:\n", "SyntaxError"),
    ("import sys\nsys.exit(0)\n" + VARIANT, "exited with status 0 before reporting"),
    ("import os\nos._exit(0)\n" + VARIANT, "exited with status 0 before reporting"),
    ("raise ImportError('no such module')\n", "ImportError: no such module"),
], ids=["syntax_error", "sys_exit", "os_exit", "import_error"])
def test_a_gan_py_that_does_not_import_is_named_as_such(source, message):
    said = _one_child(source)
    assert isinstance(said, str) and message in said, said


def test_another_draw_order_with_a_relative_import_gets_full_marks_whatever_else_the_zip_holds(tmp_path):
    planted = tmp_path / "planted"
    code = f"open({str(planted)!r}, 'w').write('ran')\n"
    members = {
        "conftest.py": code, "pytest.ini": "[pytest]\naddopts = -p no:python\n", "sitecustomize.py": code,
        "codebase/sitecustomize.py": code, "../../escaped.py": code, "/tmp/absolute.py": code,
        "out_nonsaturating/fake_9999.png": "/etc/passwd",  # a symlink
        "out_wasserstein_gp/fake_9999.png": bytes(100 << 20),  # a zip bomb
    }
    source = "from .network import Discriminator  # a relative import, as in a package\n" + VARIANT
    results, _ = _grade(tmp_path, source, members, symlinks=("out_nonsaturating/fake_9999.png",))
    points, outputs = _by_problem(results)
    assert points == FULL
    assert "symbolic link" in outputs["1.2"] and "byte limit" in outputs["4.5"]
    assert _grids_pass(results) == ["failed", "passed", "failed"]
    assert not planted.exists() and not (tmp_path.parent.parent / "escaped.py").exists()
    assert not os.path.exists("/tmp/absolute.py")


# ---- Honest layouts and the command line -----------------------------------------------------------------------


def _gan_and_grid(sub) -> tuple:
    return sub.members.get("codebase/gan.py"), sub.grid("out_nonsaturating")


@pytest.mark.parametrize("layout", ["plain", "one folder (starter, macOS Compress)", "backslashes (PowerShell 5.1)",
                                    "folder and backslashes", "with OS junk"])
def test_honest_zip_layouts_are_read_alike(tmp_path, layout):
    members = {"codebase/gan.py": REFERENCE, "out_nonsaturating/fake_0937.png": _png()}
    if "folder" in layout:
        members = {f"hw3/{k}": v for k, v in members.items()}
    if "backslashes" in layout:
        members = {k.replace("/", "\\"): v for k, v in members.items()}
    if "junk" in layout:
        members.update({"__MACOSX/codebase/._gan.py": "junk", ".DS_Store": "junk", "codebase/.DS_Store": "junk"})
    sub = submission.read_submission(_zip(tmp_path / "hw3.zip", members))
    assert _gan_and_grid(sub) == (REFERENCE.encode(), ("out_nonsaturating/fake_0937.png", _png()))
    assert not sub.notes and sub.fatal is None


def test_a_folder_of_loose_files_is_read_like_a_zip(tmp_path):
    for root in (tmp_path / "loose", tmp_path / "nested" / "hw3"):
        (root / "codebase").mkdir(parents=True)
        (root / "codebase" / "gan.py").write_text(REFERENCE)
        (root / "out_nonsaturating").mkdir()
        (root / "out_nonsaturating" / "fake_0937.png").write_bytes(_png())
    for folder in (tmp_path / "loose", tmp_path / "nested"):
        sub = submission.read_submission(folder)
        assert _gan_and_grid(sub) == (REFERENCE.encode(), ("out_nonsaturating/fake_0937.png", _png()))
    (tmp_path / "loose" / "codebase" / "gan.py").unlink()
    (tmp_path / "loose" / "codebase" / "gan.py").symlink_to("/etc/passwd")
    assert "a symbolic link" in submission.read_submission(tmp_path / "loose").members["codebase/gan.py"]


def test_two_different_gan_py_are_not_guessed_between_and_copies_are_one(tmp_path):
    members = {"a/codebase/gan.py": REFERENCE, "b/codebase/gan.py": VARIANT}
    verdict = submission.read_submission(_zip(tmp_path / "hw3.zip", members)).members["codebase/gan.py"]
    assert "two different gan.py files, a/codebase/gan.py and b/codebase/gan.py" in verdict
    members = {"a/codebase/gan.py": REFERENCE, "backup/gan.py": REFERENCE}
    assert submission.read_submission(_zip(tmp_path / "hw3.zip", members)).members["codebase/gan.py"] == \
        REFERENCE.encode()


def _work_folder(root: Path) -> Path:
    """A student's whole work folder, as one zips it: the starter, out_* runs with grids, checkpoints, CSVs."""
    for name in ("README.md", "run_gan.py", "codebase/network.py", "codebase/data.py", "tests/test_losses.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("# starter file\n")
    (root / "codebase" / "gan.py").write_text(REFERENCE)
    for run in submission.RUNS.values():
        (root / run).mkdir()
        for step in range(0, 1000, 50):
            (root / run / f"fake_{step:04d}.png").write_bytes(_png())
        (root / run / "checkpoint.pt").write_bytes(os.urandom(1 << 20))
        (root / run / "losses.csv").write_text("step,d_loss,g_loss\n")
    return root


@pytest.mark.parametrize("layout", ["bare gan.py from an LMS", "gan.py alone in a folder", "gan.py beside hw3.zip",
                                    "Windows extract-all zipped again", "whole work folder", "ZIP holding hw3.zip"])
def test_honest_uploads_are_found_wherever_the_work_is(tmp_path, layout):
    hw3 = _zip(tmp_path / "hw3.zip", {"codebase/gan.py": REFERENCE, "out_nonsaturating/fake_0937.png": _png()})
    upload = tmp_path / "upload"
    upload.mkdir()
    if layout == "bare gan.py from an LMS":
        path = upload / "lee_10070_50070_gan.py"
        path.write_text(REFERENCE)
    elif layout == "gan.py alone in a folder":
        (upload / "gan.py").write_text(REFERENCE)
        path = upload
    elif layout == "gan.py beside hw3.zip":
        (upload / "gan.py").write_text(REFERENCE)
        shutil.copyfile(hw3, upload / "hw3.zip")
        path = upload
    elif layout == "Windows extract-all zipped again":
        path = _zip(upload / "hw3_starter.zip", {"hw3_starter/hw3/codebase/gan.py": REFERENCE,
                                                 "hw3_starter/hw3/out_nonsaturating/fake_0937.png": _png()})
    elif layout == "whole work folder":
        work = _work_folder(tmp_path / "hw3")
        path = Path(shutil.make_archive(str(upload / "hw3"), "zip", work.parent, work.name))
        with zipfile.ZipFile(path) as zf:
            assert len(zf.infolist()) > 64
    else:
        path = _zip(upload / "outer.zip", {"hw3.zip": hw3.read_bytes()})
    sub = submission.read_submission(path)
    assert sub.fatal is None and sub.members["codebase/gan.py"] == REFERENCE.encode(), sub.members
    if "gan.py" not in layout.split()[0:2] and "alone" not in layout and "bare" not in layout:
        assert check_grid_passes(sub)


def check_grid_passes(sub) -> bool:
    return submission.check_grid(sub.grid("out_nonsaturating"), "out_nonsaturating") is None


def test_a_bare_gan_py_scores_full_marks_through_grade_py(tmp_path):
    path = tmp_path / "lee_10070_50070_gan.py"
    path.write_text(REFERENCE)
    grade.main([str(path), "-o", str(tmp_path / "r.json")])
    results = json.loads((tmp_path / "r.json").read_text())
    assert _by_problem(results)[0] == FULL


@pytest.mark.parametrize("flags, words", [
    (["--timeout", "-1"], "positive, finite"),
    (["--timeout", "0"], "positive, finite"),
    (["--timeout", "nan"], "positive, finite"),
    (["--timeout", "inf"], "positive, finite"),
    (["-o", "missing/dir/r.json"], "does not exist"),
])
def test_bad_flags_are_usage_errors(tmp_path, monkeypatch, capsys, flags, words):
    monkeypatch.chdir(tmp_path)
    path = _zip(tmp_path / "hw3.zip", GRIDS)
    with pytest.raises(SystemExit) as e:
        grade.main([str(path), *flags])
    assert e.value.code == 2 and words in capsys.readouterr().err


def test_missing_or_non_zip_input_fails_loudly(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        grade.main([str(tmp_path / "nothing.zip"), "-o", str(tmp_path / "r.json")])
    assert e.value.code == 2 and "no such file" in capsys.readouterr().err
    text = tmp_path / "hw3.zip"
    text.write_text("not a zip")
    with pytest.raises(SystemExit) as e:
        grade.main([str(text), "-o", str(tmp_path / "r.json")])
    assert e.value.code and "cannot read the submission as a ZIP" in str(e.value.code)
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["score"] == 0 and "cannot read the submission as a ZIP" in results["output"]


@pytest.mark.parametrize("mode, parallel", [("process", 3), ("process", 1), ("user", 3),
                                            pytest.param("bwrap", 3, marks=needs_bwrap)])
def test_sigterm_to_the_grader_kills_every_child_and_removes_its_folders(tmp_path, mode, parallel, request):
    source = REFERENCE + """
import time
time.sleep(600)
"""
    path = _zip(tmp_path / "hw3.zip", {"codebase/gan.py": source, **GRIDS})
    command = _user_mode_grader(tmp_path) if mode == "user" else [*GRADE]
    scratch = Path(tempfile.mkdtemp())  # not under tmp_path: user mode's children must reach their folders
    scratch.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
    env = {**os.environ, "TMPDIR": str(scratch)}
    proc = subprocess.Popen([*command, str(path), "-o", str(tmp_path / "r.json"), "--sandbox", mode,
                             "--parallel", str(parallel)], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def harnesses() -> list[int]:  # this grader's children only: other graders may run on the machine
        found = []
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                if entry.name.isdigit() and b"harness.py" in cmdline and b"\0probe\0" not in cmdline and \
                        _alive(int(entry.name)) and _descends(int(entry.name), proc.pid):
                    found.append(int(entry.name))
            except OSError:
                pass
        return found

    before = set(harnesses())
    deadline = time.monotonic() + 60
    while len(set(harnesses()) - before) < parallel and time.monotonic() < deadline:
        time.sleep(0.2)
    started = set(harnesses()) - before
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert len(started) >= parallel
    time.sleep(0.5)
    assert not any(_alive(pid) for pid in started) and not set(harnesses()) - before  # none started after
    assert list(scratch.iterdir()) == []


def test_result_files_are_plain_data_with_size_caps():
    import torch

    from grading.child import wire

    outputs = {"main": {"d_loss": torch.tensor(1.5), "z": [torch.randn(3, 4)], "y": [None, torch.arange(3)],
                        "first_g": 1, "error": "text"}}
    back = wire.decode(wire.encode(outputs))
    assert back["main"]["first_g"] == 1 and back["main"]["error"] == "text" and back["main"]["y"][0] is None
    assert torch.equal(back["main"]["z"][0], outputs["main"]["z"][0]) and back["main"]["y"][1].dtype == torch.int64
    # A tiny file that claims a huge tensor, or points outside itself, is refused before anything is allocated.
    for spec in (["f32", [1 << 30], 0], ["f32", [1 << 20, 1 << 20], 0], ["f32", [4], 1 << 40], ["pickle", [], 0]):
        with pytest.raises(ValueError):
            wire.decode(json.dumps({"x": {"tensor": spec}}).encode() + b"\n" + bytes(16))
    with pytest.raises(ValueError):
        wire.decode(b"{" * (2 << 20))  # no header within the cap


def test_the_grader_never_unpickles_what_a_child_wrote():
    import pickle

    from grading.child import wire

    assert "unreadable results" in scoring.decode(wire.unframe(wire.frame(pickle.dumps({"main": bytearray(10)}))))


def test_bubblewrap_options_exist_in_ubuntu_22_04s_bubblewrap_0_6():
    # Every option of bubblewrap 0.6.1's manual (Ubuntu 22.04); --size came in 0.7 and is used only from there.
    known = set("""--args --unshare-user --unshare-user-try --unshare-ipc --unshare-pid --unshare-net --unshare-uts
        --unshare-cgroup --unshare-cgroup-try --unshare-all --share-net --userns --userns2 --pidns --uid --gid
        --hostname --chdir --clearenv --setenv --unsetenv --lock-file --sync-fd --perms --bind --bind-try
        --dev-bind --dev-bind-try --ro-bind --ro-bind-try --remount-ro --exec-label --file-label --proc --dev
        --tmpfs --mqueue --dir --file --bind-data --ro-bind-data --symlink --seccomp --add-seccomp-fd --block-fd
        --userns-block-fd --info-fd --json-status-fd --new-session --die-with-parent --as-pid-1 --cap-add
        --cap-drop""".split())
    old = sandbox.bubblewrap_argv(Path("/tmp/box"), ["python"], version=(0, 6))
    new = sandbox.bubblewrap_argv(Path("/tmp/box"), ["python"], version=(0, 8))
    assert {a for a in old if a.startswith("--")} - {"--"} <= known
    assert {a for a in new if a.startswith("--")} - known - {"--"} == {"--size"}


def test_process_mode_still_grades_where_namespaces_are_forbidden(tmp_path):
    results, _ = _grade(tmp_path, REFERENCE, mode="process")
    assert _by_problem(results)[0] == FULL and results["extra_data"]["sandbox"] == "process"


# ---- User mode: a dedicated uid per child, for containers without user namespaces ------------------------------

def _user_mode_grader(tmp_path) -> list[str]:
    """The command of a user-mode deployment: the grader's files (autograder_zip.py's list) copied to a private
    folder (tmp_path is root's alone), run with this Python readable to other users."""
    prefix = world_python.command_prefix()
    deploy = tmp_path / "grader"
    for name in autograder_zip.grader_files():
        (deploy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, deploy / name)
    # -E: this deployment's own package, found in its folder, whatever PYTHONPATH says
    return [*prefix, "/bin/sh", "-c", 'cd "$0" && exec "$@"', str(deploy), sys.executable, "-E", "-m", "grading", "grade"]


def _uid_processes() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            uid = int((entry / "status").read_text().split("Uid:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
        if uid in sandbox.uid_range():
            found.append(entry.name)
    return found


def _private_python() -> bool:
    return any(not os.stat(p).st_mode & 0o001 for p in Path(sys.base_prefix).resolve().parents)


@pytest.mark.parametrize("mode", ["auto", "bwrap", "user"])
def test_a_sandbox_that_cannot_start_the_python_is_a_failed_grading_never_a_score(tmp_path, mode):
    # No jail, and this Python in a folder other users cannot enter (pyenv under /root): no sandboxed uid can
    # start it. On main at 712f5a9 auto picked bwrap anyway and scored a correct submission 0 / 35, exit 0.
    if os.geteuid() != 0 or not _private_python():
        pytest.skip("needs root and a Python under a private folder")
    if mode == "bwrap" and not sandbox.bubblewrap_version():
        pytest.skip("bubblewrap cannot create namespaces here")
    path = _zip(tmp_path / "hw3.zip", {"codebase/gan.py": REFERENCE, **GRIDS})
    run = subprocess.run([*GRADE, str(path), "-o", str(tmp_path / "r.json"),
                          "--sandbox", mode], capture_output=True, text=True, env={**os.environ, "GRADE_JAIL": "off"},
                         timeout=600)
    assert run.returncode == grade.GRADING_FAILED, run.stdout + run.stderr
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["extra_data"]["status"] == scoring.GRADING_FAILED and results["score"] == 0
    assert "could not start the grader's own code" in run.stderr and "python -m grading prepare" in run.stderr


def test_a_child_that_fails_before_it_is_ready_fails_the_grading(tmp_path, monkeypatch):
    # as a child whose Python cannot import torch: it dies before the student's gan.py is imported
    def broken(mode, box, uid, problem, cpu_seconds):
        return [sys.executable, "-c", "raise SystemExit(\"ModuleNotFoundError: No module named 'torch'\")"]

    sandbox.pick_mode("process")
    monkeypatch.setattr(sandbox, "harness_argv", broken)
    path = _zip(tmp_path / "hw3.zip", {"codebase/gan.py": REFERENCE, **GRIDS})
    with pytest.raises(scoring.GradingFailed, match="failed before the student's code ran.*No module named 'torch'"):
        scoring.grade(path, mode="process")


def test_grading_twice_gives_the_same_messages():
    from tests.grading.mutants import MUTANTS, apply

    uniform = next(m for m in MUTANTS if m.name.startswith("z uniform"))
    source = apply(REFERENCE, uniform)  # its message quotes statistics of the noise the function drew
    first, second = ([message for _, message in checks.evaluate("1.2", _one_child(source))] for _ in range(2))
    assert first == second and sum(message is not None for message in first) == 1, first


def test_global_settings_changed_at_import_do_not_change_the_probes(tmp_path):
    source = REFERENCE + """
torch.set_default_dtype(torch.float64)
torch.set_grad_enabled(False)
torch.use_deterministic_algorithms(True)
"""
    results, _ = _grade(tmp_path, source)
    points, outputs = _by_problem(results)
    assert points == FULL, outputs
    assert "1.2, 3.2, 4.5: gan.py changed torch's default dtype (to torch.float64)" in results["output"]


def test_a_child_killed_from_outside_is_the_gradings_failure_not_a_score(tmp_path):
    source = REFERENCE + "\nimport time\ntime.sleep(5)\n"  # time to find it; one not killed then ends normally
    path = _zip(tmp_path / "hw3.zip", {"codebase/gan.py": source, **GRIDS})
    proc = subprocess.Popen([*GRADE, str(path), "-o", str(tmp_path / "r.json"),
                             "--sandbox", "process"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, killed = time.monotonic() + 60, set()
    while not killed and time.monotonic() < deadline:  # as the machine's OOM killer or an administrator would
        time.sleep(0.5)
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                if entry.name.isdigit() and b"harness.py" in cmdline and b"\0probe\0" not in cmdline and \
                        (entry / "comm").read_text().startswith("python") and _descends(int(entry.name), proc.pid):
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed.add(entry.name)
            except OSError:
                pass
    _, err = proc.communicate(timeout=120)
    assert killed and proc.returncode == grade.GRADING_FAILED, err
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["extra_data"]["status"] == scoring.GRADING_FAILED and results["score"] == 0
    assert "the grading failed, not your code" in results["output"] and "SIGKILL" in results["output"]


def test_a_helper_module_of_the_students_is_named_with_what_is_graded():
    source = REFERENCE.replace("import torch\n", "import torch\nfrom codebase.my_helpers import stable_bce\n", 1)
    said = _one_child(source)
    assert said.startswith("gan.py imports codebase.my_helpers, which the grader does not have: only "
                           "codebase/gan.py is graded"), said
