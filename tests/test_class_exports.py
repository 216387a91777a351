"""A class of 26 as Canvas, Moodle and Blackboard export it (tests/grading/exports.py), graded end to end by
`python -m grading class`: every honest student 35, every copy flagged, no independent pair flagged, the uploads no
rule can grade left to a human, and gradebook files with a row for every graded student and none for the others."""
import csv
import io
import json
import subprocess

import pytest

from grading.batch import entries
from tests.conftest import GRADE_CLASS
from tests.grading import exports


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


# Whose files each LMS lays out its own way (several files, attempts, folders, text entries, a corrupt ZIP), with a
# copy and its source: graded again in Moodle's and Blackboard's layouts. The whole class is graded in Canvas's
# (each layout whole took 170-185 s, 2 jobs, measured when this test was written).
LAYOUT_CASES = ("Ann Lee", "Bo Wu", "Cy Do", "Fay Oh", "Gus Pak", "Nia Xu", "Hal Qi", "Quin Abe", "Tia Du", "Uri Ek",
                "Val Fu", "Wes Gi")


@pytest.mark.parametrize("lms", exports.LMS)
def test_a_class_graded_end_to_end(tmp_path, class_, lms):
    class_ = class_ if lms == "canvas" else [s for s in class_ if s.name in LAYOUT_CASES]
    folder, out = exports.build(tmp_path / lms, lms, class_), tmp_path / "graded"
    run = subprocess.run([*GRADE_CLASS, str(folder), "-o", str(out), "--lms", lms,
                          "--sandbox", "process", "--jobs", "2", "--column", "HW3 GAN"],
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {r["student"]: r for r in csv.DictReader(io.StringIO((out / "grades.csv").read_text()))}
    keys = {s.name: exports.key(s, lms) for s in class_}
    for s in class_:
        row = rows[keys[s.name]]
        if s.expect == "human":
            assert row["status"] == "needs attention" and row["total"] == "", (s.name, row)
        elif s.expect == "<35":
            assert row["status"] == "graded" and float(row["total"]) < 35, (s.name, row)
        else:
            assert row["total"] == f"{s.expect}", (s.name, row["total"], row["notes"])
    by_username = {s.username: s for s in class_}
    copies = {(keys[s.name], keys[by_username[s.copy_of].name]) for s in class_ if s.copy_of}
    assert copies
    flagged = {(a, b) for a, row in rows.items() for b in rows if f"gan.py like {b}'s" in row["flags"]}
    assert {tuple(sorted(p)) for p in copies} == {tuple(sorted(p)) for p in flagged}, flagged  # no other pair
    if lms == "canvas":
        pia, dee = keys["Pia Zed"], keys["Dee Ray"]
        assert f"grid like {dee}'s" in rows[pia]["flags"]  # Dee's grids, mirrored
        assert rows[keys[" =1+1 Vo"]]["name"].lstrip().startswith(("'", "vo"))  # never a formula
    humans = {keys[s.name] for s in class_ if s.expect == "human"}
    book = list(csv.reader(io.StringIO(next(out.glob("gradebook_*.csv")).read_text())))
    column = {"canvas": 1, "moodle": 0, "blackboard": 0}[lms]
    listed = {r[column].removeprefix("Participant ") for r in book[1:] if r[0] != "Points Possible"}
    assert listed == set(rows) - humans
    results = json.loads((out / "results" / f"{keys['Ann Lee']}.json").read_text())
    assert all(t.get("status") in ("passed", "failed") for t in results["tests"])
    todo = (out / "report.html").read_text().split("Needs a human", 1)[1]
    assert all(f"<td>{key}</td>" in todo.split("</table>", 1)[0] for key in humans)
