"""grading/report.py, grading/gradebook.py and python -m grading report: the class report, its flags and the LMS gradebook,
on a class whose results are written here by hand (no grading)."""
import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grading import report
from grading.batch import Entry
from grading.scoring import GRADED, GRADING_FAILED, grader_version
from tests.conftest import ROOT, GRADING
from tests.grading import classmates

REFERENCE = (ROOT / "codebase" / "gan.py").read_text()
VARIANT = (ROOT / "tests" / "grading" / "variant_gan.py").read_text()
OTHER = (ROOT / "tests" / "grading" / "variant_loop_gan.py").read_text()
HOSTILE = '<img src="https://evil.example/x.png" onerror="alert(1)"></script>'


def _test(number: str, points: float, score: float, output: str) -> dict:
    test = {"number": number, "name": f"{number} check", "score": score, "max_score": points, "output": output}
    if points:
        test["status"] = "passed" if score == points else "failed"
    return test


def _results(score_12: float, grids: dict, flags: list[str] = (), status: str = GRADED, missing: list[str] = (),
             version: str | None = None) -> dict:
    tests = [_test("1.2.1", 10, score_12, "passed" if score_12 == 10 else "d_loss value: got 0.31, expected 1.39"),
             _test("3.2.1", 10, 10, "passed"), _test("4.5.1", 15, 15, "passed")]
    return {"score": score_12 + 25, "tests": tests, "output": "Score.\nthe grading failed (a test)",
            "extra_data": {"status": status, "grids": grids, "flags": list(flags), "missing": list(missing),
                           "grader_version": version or grader_version()}}


def _grid(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (302, 302), dtype=np.uint8)


SCORES = {"realism": 0.7, "classes": 9.5, "copies": 0, "healthy": True}


def _class(out: Path, lms: str | None = "canvas") -> list[Entry]:
    """Five students: two with one gan.py (one disguised) and one 4.5 grid, one whose samples are real images, one
    with a hostile name and a failed 1.2 (those two solved it independently), one whose grading failed."""
    students = [Entry("101", out / "a.zip", "Ann"), Entry("102", out / "b.zip", "Ben", late=True),
                Entry("103", out / "c.zip", "Cy"), Entry("104", out / "d.zip", HOSTILE),
                Entry("105", out / "e.zip", "Eve")]  # the submissions are not kept: results are trusted as they are
    original = classmates.gan_py("one_call")
    copy = re.sub(r"#[^\n]*", "", original).replace("fakes", "generated")
    sources = {"101": original, "102": copy, "103": VARIANT, "104": OTHER}
    grids = {"101": [1, 2, 3], "102": [4, 5, 3], "103": [6, 7, 8], "104": [9, 10, 11]}
    realism = {"101": [0.7] * 3, "102": [0.5] * 3, "103": [0.6] * 3, "104": [0.1, 0.7, 0.7]}
    scores = {s: {p: {**SCORES, "realism": r, "healthy": r > 0.45} for p, r in zip(("1.2", "3.2", "4.5"), rs)}
              for s, rs in realism.items()}
    results = {"101": _results(10, scores["101"]), "102": _results(10, scores["102"]),
               "103": _results(10, scores["103"], ["1.2: 100 of the 100 samples are real Fashion-MNIST images"]),
               "104": _results(4, scores["104"], [HOSTILE]), "105": _results(0, {}, status=GRADING_FAILED)}
    (out / "results").mkdir(parents=True)
    for student, content in results.items():
        (out / "results" / f"{student}.json").write_text(json.dumps(content))
        work = out / "work" / student
        work.mkdir(parents=True)
        if student in sources:
            (work / "gan.py").write_text(sources[student])
        for problem, seed in zip(("1.2", "3.2", "4.5"), grids.get(student, [])):
            Image.fromarray(_grid(seed)).save(work / f"{problem}.png")
    report.save_class(out, students, lms, "HW3 GAN (4242)")
    return students


def _csv(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


def test_flags_name_both_students_and_go_to_grades_csv(tmp_path):
    _class(tmp_path)
    built = report.build(tmp_path)
    assert built["flagged"] == 4
    rows = {r["student"]: r for r in csv.DictReader(io.StringIO((tmp_path / "grades.csv").read_text()))}
    assert "gan.py like 102's" in rows["101"]["flags"] and "4.5 grid like 102's" in rows["101"]["flags"]
    assert "gan.py like 101's" in rows["102"]["flags"] and "4.5 grid like 101's" in rows["102"]["flags"]
    assert "real Fashion-MNIST images" in rows["103"]["flags"]
    assert "like" not in rows["103"]["flags"] + rows["104"]["flags"]  # independent solutions, written differently
    assert rows["105"]["status"] == "needs attention" and rows["105"]["flags"] == ""


def test_the_page_is_self_contained_escapes_students_and_fetches_nothing(tmp_path):
    _class(tmp_path)
    page = report.build(tmp_path)["report"].read_text()
    assert 'http-equiv="Content-Security-Policy"' in page and "default-src 'none'" in page
    assert HOSTILE not in page and "&lt;img src=&quot;https://evil.example" in page
    sources = re.findall(r'\ssrc="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'\s(href|src)="(https?:)?//', page)
    assert page.count('class="card"') == 5 and "no grid" in page  # 105 has no grids
    assert "d_loss value: got #, expected #" in page  # failures grouped with their numbers blanked


def test_gradebook_files_in_each_lms_format_leave_failed_gradings_out(tmp_path):
    for lms in ("canvas", "moodle", "blackboard"):
        out = tmp_path / lms
        _class(out, lms)
        built = report.build(out)
        rows = _csv(built["gradebook"])
        ids = [r[0] if lms == "blackboard" else r[1] for r in rows[1:]]
        if lms == "canvas":
            assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "HW3 GAN (4242)"]
            assert rows[1] == ["Points Possible", "", "", "", "", "35"] and rows[2] == ["Ann", "101", "", "", "", "35"]
            ids = [r[1] for r in rows[2:]]
        elif lms == "moodle":
            assert rows[0][:3] == ["Identifier", "Full name", "Grade"] and "Last modified (grade)" in rows[0]
            assert rows[1][:4] == ["Participant 101", "Ann", "35.00", "35.00"]
            ids = [r[0].split()[-1] for r in rows[1:]]
        else:
            assert rows[0] == ["Username", "HW3 GAN (4242) [Total Pts: 35 Score]"] and rows[1] == ["101", "35"]
        assert ids == ["101", "102", "103", "104"]  # 105's grading failed: its LMS cell is left as it is
    assert not (tmp_path / "canvas" / "gradebook_moodle.csv").exists()


def test_class_report_rebuilds_and_says_what_is_missing(tmp_path):
    _class(tmp_path, lms=None)
    done = subprocess.run([*GRADING, "report", str(tmp_path)], capture_output=True,
                          text=True)
    assert done.returncode == 0 and "report.html written" in done.stdout
    assert (tmp_path / "report.html").is_file() and not list(tmp_path.glob("gradebook_*"))
    done = subprocess.run([*GRADING, "report", str(tmp_path / "results")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "no class.json in it: give the -o folder of a `python -m grading class` run" in done.stderr
    assert "Traceback" not in done.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(not CHROMIUM, reason="no chromium: bash setup.sh --grader installs it")
def test_a_browser_loads_every_image_and_sorts_the_gallery_offline(tmp_path):
    _class(tmp_path)
    page = report.build(tmp_path)["report"]
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--host-resolver-rules=MAP * ~NOTFOUND", "--dump-dom", f"{page.as_uri()}#sort=worst"],
                         capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom)[1]
    assert 'data-sorted="worst"' in body
    assert 'data-images="13/13"' in body  # 12 grids and the histogram
    order = re.findall(r'class="card" data-student="([^"]+)"', dom)
    assert order == ["104", "102", "103", "101", "105"]  # by the worst grid's realism; no grids last
    assert all(s.startswith("data:") for s in re.findall(r'<img[^>]*\ssrc="([^"]*)"', dom))  # the name stayed text


def test_stale_results_and_unreadable_submissions_need_a_human_and_stay_out_of_the_gradebook(tmp_path):
    students = _class(tmp_path)
    old = json.loads((tmp_path / "results" / "101.json").read_text())
    old["extra_data"]["grader_version"] = "an older one"
    (tmp_path / "results" / "101.json").write_text(json.dumps(old))
    unreadable = _results(0, {}, missing=["cannot read the submission as a ZIP (BadZipFile: File is not a zip file)"])
    (tmp_path / "results" / "102.json").write_text(json.dumps(unreadable))
    built = report.build(tmp_path)
    page = built["report"].read_text()
    assert "graded by another grader version, or before the submission changed" in page
    assert "cannot read the submission as a ZIP" in page
    assert [r[1] for r in _csv(built["gradebook"])[2:]] == ["102", "103", "104"]
    changed = students[2].path  # a submission that changed since its grading
    changed.write_text("new work")
    assert [r[1] for r in _csv(report.build(tmp_path)["gradebook"])[2:]] == ["102", "104"]


def test_blank_and_collapsed_grids_are_not_paired():
    from grading import similarity

    blank = np.zeros((302, 302), np.uint8)
    one = np.tile(np.pad(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8), 1), (10, 10))
    one = np.pad(one, 1)  # the same image 100 times, in the run scripts' layout
    assert similarity.collapsed(blank) and similarity.collapsed(one) and not similarity.collapsed(_grid(0))


@pytest.mark.parametrize("value, shown", [
    ("=1+1", "'=1+1"), (" =1+1", "' =1+1"), ("  +cmd", "'  +cmd"), ("\u00a0-2", "'\u00a0-2"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=x", "'\t=x"), ("\uff1d1+1", "'\uff1d1+1"), ("Ann Lee", "Ann Lee"), ("D'Souza", "D'Souza"), ("35", "35"),
    ("a=b", "a=b"),
])
def test_no_cell_of_a_grader_csv_starts_a_formula_even_after_spaces(value, shown):
    from grading.batch import csv_cell

    assert csv_cell(value) == shown


def test_the_note_carries_the_root_cause_in_whole_words():
    from grading.batch import Entry, summary

    held = "not scored until the d_loss and g_loss values are right: this check looks at how the function draws"
    cause = ("d_loss = 0.460701, expected 0.35796: the images G returned were changed in place (gan.py line 110): an "
             "in-place operation changes every tensor that shares its memory, and a detached tensor shares the memory "
             "of the tensor it was detached from, which is why the interpolates moved")
    tests = [{"number": "4.5.1", "score": 0.0, "max_score": 1.0, "status": "failed", "output": held},
             {"number": "4.5.2", "score": 0.0, "max_score": 3.0, "status": "failed", "output": cause},
             {"number": "1.2.1", "score": 1.0, "max_score": 1.0, "status": "passed", "output": "passed"}]
    results = {"score": 1.0, "tests": tests, "extra_data": {"status": "graded"}}
    note = summary(Entry("ann", Path("ann.zip"), "Ann", False, 0, ()), results)["notes"]
    assert note.startswith("4.5: d_loss = 0.460701, expected 0.35796: the images G returned were changed in place")
    assert held not in note and note.endswith("…") and len(note) <= len("4.5: ") + 240
    assert note[:-1].split()[-1] in cause.split()  # cut between words


def test_needs_a_human_is_a_to_do_list_most_urgent_first():
    students = [Entry(s, Path(f"{s}.zip"), s.title(), late=s == "late") for s in
                ("ok", "late", "crashed", "stale", "ambiguous", "hung", "copied", "corrupt", "unhealthy", "ignored")]
    def graded(**extra):
        return {"score": 35, "output": "Score 35 / 35.", "tests": [],
                "extra_data": {"status": GRADED, "grader_version": grader_version(), **extra}}
    results = {"ok": graded(), "late": graded(), "crashed": {"output": "x\nthe grading failed (sandbox)",
                                                              "extra_data": {"status": GRADING_FAILED}},
               "stale": graded(status="out of date"),
               "ambiguous": graded(status="needs attention", ambiguous="two different gan.py files, a and b"),
               "hung": {**graded(), "tests": [{"number": "4.5.1", "output": "stopped at the time limit of 120 s"}]},
               "copied": graded(), "corrupt": graded(missing=["cannot read the submission as a ZIP"]),
               "unhealthy": graded(grids={"1.2": {"healthy": False}}),
               "ignored": {**graded(), "output": "Score 35 / 35.\nnot graded: old/gan.py (another gan.py)"}}
    page = report.attention(students, results, {"copied": ["1.2 grid like ok's"]})
    order = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td>", page)
    assert order == [("grade again", "crashed"), ("grade again", "stale"), ("choose", "ambiguous"),
                     ("ask for a new upload", "corrupt"), ("look at the code", "hung"),
                     ("look at the flag", "copied"), ("look at the grids", "unhealthy"), ("late", "late"),
                     ("left out", "ignored")]
