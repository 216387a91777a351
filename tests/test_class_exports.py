"""A class of 26 as Canvas, Moodle and Blackboard export it (tests/grading/exports.py): every student found with the
files of their attempt, the grader handed each one's own work in every layout, every honest solution worth 35 and
the wrong ones less, and a class graded end to end by `python -m grading class` (the students whose work each LMS
lays out its own way, in Canvas's layout): copies flagged and no independent pair, the uploads no rule can grade left
to a human, gradebook files with a row for every graded student and none for the others, a rerun that grades nothing
again."""
import csv
import io
import json
import os
import subprocess

import pytest

from grading import checks, gradebook
from grading.batch import entries, stage
from grading.child import probes
from grading.submission import GAN, RUNS, check_grid, read_submission
from tests.conftest import GRADE_CLASS, UNJUDGED
from tests.grading import exports

pytestmark = pytest.mark.xdist_group("class_exports")  # one worker runs the module: its tests share its graded class


@pytest.fixture(scope="module")
def class_():
    return exports.students()


@pytest.mark.parametrize("lms", exports.LMS)
def test_every_student_is_found_with_the_files_of_their_attempt(tmp_path, class_, lms):
    found = {e.student: e for e in entries(exports.build(tmp_path / lms, lms, class_), lms=lms)}
    assert sorted(found) == sorted(exports.key(s, lms) for s in class_)
    by_name = {s.name: found[exports.key(s, lms)] for s in class_}
    if lms != "blackboard":  # Blackboard's names come from its receipts, as they are
        assert by_name["Gus Pak"].late == (lms == "canvas")  # Moodle's names carry no late flag
    if lms != "moodle":  # Moodle exports the current attempt only
        assert by_name["Hal Qi"].others and not by_name["Ann Lee"].others
    no_code = ["Uri Ek"] if lms == "moodle" else ["Uri Ek", "Val Fu"]  # Moodle's PDF lies in a folder: the reader
    assert [s.name for s in class_ if by_name[s.name].no_code] == no_code  # finds it
    assert by_name["Bo Wu"].parts or lms == "moodle"  # Moodle's folder holds both: graded as one folder anyway


@pytest.mark.parametrize("lms", exports.LMS)
def test_each_layout_hands_the_grader_the_students_own_work(tmp_path, class_, lms):
    """What `python -m grading class` hands `python -m grading grade` (the export's file, or the attempt's files laid
    out as one folder) is read as the student's newest gan.py and valid grids, or left to a human."""
    found = {e.student: e for e in entries(exports.build(tmp_path / lms, lms, class_), lms=lms)}
    for s in class_:
        entry = found[exports.key(s, lms)]
        if entry.no_code:
            assert s.expect == "human", s.name
            continue
        path = entry.path
        if entry.parts:
            path = tmp_path / "staged" / entry.file_name
            stage(entry, path)
        sub = read_submission(path)
        if s.graded is None:
            assert s.expect == "human" and (sub.ambiguous or sub.fatal or sub.unreadable), (s.name, sub.notes)
            continue
        assert sub.members.get(GAN) == s.graded.encode() and not sub.ambiguous, (s.name, sub.notes)
        if s.name not in ("Cy Do", "Sol Cy"):  # a gan.py beside a write-up, the starter: no grids
            assert [check_grid(sub.grid(run), run, sub.where) for run in RUNS.values()] == [None] * 3, s.name


def test_every_honest_solution_scores_full_marks_and_the_wrong_ones_less(tmp_path, class_, one_thread):
    """Each gan.py of the class through the grader's probes and checks, in this process (trusted test code; the
    sandbox's part is the end-to-end test's below)."""
    for i, s in enumerate(class_):
        if s.graded is None:
            continue
        path = tmp_path / str(i) / "gan.py"
        path.parent.mkdir()
        path.write_text(s.graded)
        module = probes.load_module(path)
        earned = sum(check.points for number in checks.PROBLEMS
                     for check, message in checks.evaluate(number, probes.run(module, number)) if message is None)
        if s.expect == "<35":
            assert earned < 35, s.name
        else:
            assert earned == s.expect, (s.name, earned)


@pytest.mark.parametrize("lms", exports.LMS)
def test_the_gradebook_has_a_row_for_every_graded_student_and_none_for_the_others(tmp_path, class_, lms):
    folder = exports.build(tmp_path / lms, lms, class_)
    if lms == "canvas":  # under anonymous grading: no user id to import
        (folder / "anon_Xy7Qa_9200_hw3.zip").write_bytes(b"x")
    students = entries(folder, lms=lms)
    test = {"number": "1.2.1", "score": 35.0, "max_score": 35.0, "status": "passed", "output": ""}
    results = {e.student: {"score": 35.0, "tests": [test], "extra_data": {"status": "graded"}} for e in students}
    humans = {exports.key(s, lms) for s in class_ if s.expect == "human"}
    for key in humans:
        results[key]["extra_data"] = {"status": "needs attention"}
    book = gradebook.rows(lms, "HW3 GAN", students, results)
    column = {"canvas": 1, "moodle": 0, "blackboard": 0}[lms]
    listed = {r[column].removeprefix("Participant ") for r in book[1:] if r[0] != "Points Possible"}
    assert listed == {exports.key(s, lms) for s in class_} - humans


# Several files of one attempt, the course folder with the starter inside, a disguised copy of it with its grids
# mirrored, and three uploads for a human: a corrupt ZIP, a text entry, two projects. (Wrong work scored less by a
# class run: tests/test_batch.py; every classmate's score: the test above.)
END_TO_END = ("Bo Wu", "Dee Ray", "Pia Zed", "Tia Du", "Uri Ek", "Wes Gi")


@pytest.fixture(scope="module")
def graded(tmp_path_factory, class_):
    """(the students, the output folder, the run, a rerun) of `python -m grading class` on END_TO_END's Canvas
    export, and a file that is no student's."""
    students = [s for s in class_ if s.name in END_TO_END]
    work = tmp_path_factory.mktemp("class")
    folder, out = exports.build(work / "canvas", "canvas", students), work / "graded"
    (folder / "stray.txt").write_text("not a student's")
    command = [*GRADE_CLASS, str(folder), "-o", str(out), "--lms", "canvas", "--sandbox", "process", "--jobs", "2",
               "--column", "HW3 GAN"]
    env = {**os.environ, **UNJUDGED}  # the flow of a class run; what judging grids does is test_grids.py's
    run = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env)
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env)
    return students, out, run, rerun


def test_a_class_graded_end_to_end(graded):
    students, out, run, _ = graded
    assert run.returncode == 0, run.stderr[-3000:]
    assert "1 name(s) in" in run.stderr and "stray.txt" in run.stderr  # said, and the run goes on
    rows = {r["student"]: r for r in csv.DictReader(io.StringIO((out / "grades.csv").read_text()))}
    keys = {s.name: exports.key(s, "canvas") for s in students}
    for s in students:
        row = rows[keys[s.name]]
        if s.expect == "human":
            assert row["status"] == "needs attention" and row["total"] == "", (s.name, row)
        elif s.expect == "<35":
            assert row["status"] == "graded" and float(row["total"]) < 35, (s.name, row)
        else:
            assert row["total"] == f"{s.expect}", (s.name, row["total"], row["notes"])
    by_username = {s.username: s for s in students}
    copies = {(keys[s.name], keys[by_username[s.copy_of].name]) for s in students if s.copy_of}
    assert len(copies) == 1
    flagged = {(a, b) for a, row in rows.items() for b in rows if f"gan.py like {b}'s" in row["flags"]}
    assert {tuple(sorted(p)) for p in copies} == {tuple(sorted(p)) for p in flagged}, flagged  # no other pair
    assert f"grid like {keys['Dee Ray']}'s" in rows[keys["Pia Zed"]]["flags"]  # Dee's grids, mirrored
    results = json.loads((out / "results" / f"{keys['Bo Wu']}.json").read_text())
    assert all(t.get("status") in ("passed", "failed") for t in results["tests"])
    assert [t["status"] for t in results["tests"] if "fake_<step>.png" in t["name"]] == ["passed"] * 3  # the ZIP's
    humans = {keys[s.name] for s in students if s.expect == "human"}
    assert f"{len(humans)} student(s) need a human" in run.stdout
    book = list(csv.reader(io.StringIO((out / "gradebook_canvas.csv").read_text())))
    assert {r[1] for r in book[2:]} == set(rows) - humans
    todo = (out / "report.html").read_text().split("Needs a human", 1)[1]
    assert all(f"<td>{key}</td>" in todo.split("</table>", 1)[0] for key in humans)


def test_a_rerun_grades_nothing_again(graded):
    students, _, _, rerun = graded
    # several files hash as one submission; the uploads for a human are not graded again either
    assert f"{len(students)} already graded, 0 to grade" in rerun.stdout, rerun.stdout
