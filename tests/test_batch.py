"""python -m grading class: a folder of submissions into results and grades.csv, resumable after a kill."""
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from grading.batch import BatchError, csv_cell, entries, student_of, summary
from grading.submission import RUNS
from grading.grade import PARENT_PID
from tests.conftest import GRADE, GRADE_CLASS, ROOT, UNJUDGED
from tests.grading import classmates

REFERENCE = (ROOT / "codebase" / "gan.py").read_text()


def _files(gan: str) -> dict[str, bytes]:
    png = io.BytesIO()
    Image.new("RGB", (302, 302)).save(png, "PNG")
    return {"codebase/gan.py": gan.encode(), **{f"{run}/fake_0500.png": png.getvalue() for run in RUNS.values()}}


def _class(folder: Path) -> Path:
    """Five students: correct as a ZIP, a copy of it with a wrong g_loss as a folder, not a ZIP, no gan.py, an empty
    folder."""
    folder.mkdir()
    good = classmates.gan_py("helpers")
    wrong = good.replace("g_loss = real_term(d(x_gen))", "g_loss = -fake_term(d(x_gen))", 1)
    assert wrong != good
    for name, files in (("alice_101_hw3.zip", _files(good)),
                        ("=dave_104_hw3.zip", {k: v for k, v in _files("").items() if k != "codebase/gan.py"})):
        with zipfile.ZipFile(folder / name, "w") as zf:
            for member, content in files.items():
                zf.writestr(member, content)
    for member, content in _files(wrong).items():
        (folder / "bob_102_hw3" / member).parent.mkdir(parents=True, exist_ok=True)
        (folder / "bob_102_hw3" / member).write_bytes(content)
    (folder / "carol_103_hw3.zip").write_text("not a zip")
    (folder / "erin_105_hw3").mkdir()
    (folder / ".DS_Store").write_text("junk")
    return folder


PATTERN = r"^(?P<student>[^_]+)_\d+"


def test_students_come_from_names_or_a_pattern(tmp_path):
    assert student_of("alice.zip", None) == "alice" and student_of("bob_12_x", None) == "bob_12_x"
    assert student_of("smith_12345_678_hw3.zip", re.compile(PATTERN)) == "smith"
    assert student_of("smith_12345_678_hw3.zip", re.compile(r"_(\d+)_")) == "12345"
    assert student_of("hw3.zip", re.compile(PATTERN)) is None
    folder = _class(tmp_path / "class")
    assert sorted(e.student for e in entries(folder, re.compile(PATTERN))) == ["=dave", "alice", "bob", "carol",
                                                                              "erin"]
    (folder / "notes.txt").write_text("")
    with pytest.raises(BatchError, match="matches no student.*notes.txt"):
        entries(folder, re.compile(PATTERN))
    (folder / "notes.txt").unlink()
    (folder / "alice_999_late.zip").write_text("")  # written after the first: the newest is graded
    alice = next(e for e in entries(folder, re.compile(PATTERN)) if e.student == "alice")
    assert alice.path.name == "alice_999_late.zip" and alice.others == ("alice_101_hw3.zip",)


def _grades(path: Path) -> list[dict]:
    return list(csv.DictReader(path.read_text().splitlines()))


def _cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def _under(pid: int, word: bytes, by_pid: bool = False) -> bool:
    """Whether a live ancestor of process ``pid`` has ``word`` in its command line (``by_pid``: is process
    ``word``)."""
    while pid > 1:
        try:
            status = (Path("/proc") / str(pid) / "status").read_text()
        except OSError:
            return False
        pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        if (str(pid).encode() == word) if by_pid else (word in _cmdline(pid)):
            return True
    return False


GRADED = b"\0grading\0grade\0"  # in the command line of a grading: python -m grading grade ...


def _processes(word: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and word in (entry / "cmdline").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state not in "ZX":
                    found.append(int(entry.name))
        except OSError:
            pass
    return found


def test_a_killed_run_resumes_to_complete_grades_and_leaves_no_grading_running(tmp_path):
    folder, out = _class(tmp_path / "class"), tmp_path / "graded"
    command = [*GRADE_CLASS, str(folder), "-o", str(out), "--jobs", "2",
               "--student-pattern", PATTERN]
    before = set(_processes(GRADED))
    env = {**os.environ, **UNJUDGED}
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while not list((out / "results").glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    children = [pid for pid in _processes(b"harness.py") if _under(pid, str(first.pid).encode(), by_pid=True)]
    first.send_signal(signal.SIGKILL)  # no chance to clean up: its gradings die with it
    first.wait()
    graded_first = len(list((out / "results").glob("*.json")))
    assert 1 <= graded_first < 5
    # Its gradings died with it (each cleans up first: allow for a loaded machine); other graders may be running on
    # this machine, and keep theirs.
    def left() -> list[int]:
        return [pid for pid in set(_processes(GRADED)) - before if str(folder).encode() in _cmdline(pid)]
    deadline = time.monotonic() + 60
    while left() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left()
    assert not set(children) & set(_processes(b"harness.py"))  # no child of its gradings outlived them
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{graded_first} already graded" in rerun.stdout
    rows = _grades(out / "grades.csv")
    assert not (out / "pending").exists()
    # Nothing half-written outlived the kill: each row says what the student's results say
    said = {csv_cell(e.student): summary(e, json.loads((out / "results" / f"{e.file_name}.json").read_text()))
            for e in entries(folder, re.compile(PATTERN))}
    assert {r["student"]: (r["status"], r["total"]) for r in rows} == {k: (v["status"], v["total"])
                                                                        for k, v in said.items()}
    assert rows[0]["student"] == rows[0]["name"] == "'=dave"  # a spreadsheet must not read a name as a formula
    flags = {row["student"]: row.pop("flags") for row in rows}
    # bob's gan.py is alice's with one line changed: flagged for a human, naming each other. Everyone drew the same
    # black grids, which independent students can draw alike: not compared. The report shows it all.
    assert flags["alice"].startswith("gan.py like bob's (9") and "like alice's" in flags["bob"]
    assert flags["carol"] == flags["erin"] == flags["'=dave"] == ""
    assert (out / "report.html").is_file() and sorted(p.name for p in (out / "work" / "alice").iterdir()) == [
        "1.2.png", "3.2.png", "4.5.png", "gan.py"]
    totals = {row["student"]: row["total"] for row in rows}
    assert totals == {"'=dave": "0", "alice": "35", "bob": "29", "carol": "", "erin": "0"}  # carol's is for a human
    assert rows[3]["status"] == "needs attention" and "1 student(s) need a human" in rerun.stdout
    assert "g_loss" in rows[2]["notes"] and "cannot read the submission as a ZIP" in rows[3]["notes"]
    assert rows[0]["notes"].startswith("1.2, 3.2, 4.5: no gan.py in the")


def test_a_grading_whose_class_run_died_before_it_armed_pdeathsig_does_not_grade(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    out = tmp_path / "results.json"
    (tmp_path / "folder").mkdir()
    env = {**os.environ, **UNJUDGED, PARENT_PID: str(gone.pid)}  # started by a class run that is no longer its parent
    done = subprocess.run([*GRADE, str(tmp_path / "folder"), "-o", str(out)], env=env, capture_output=True,
                          timeout=300)
    assert (done.returncode, done.stderr, out.exists()) == (128 + signal.SIGTERM, b"", False)


def test_user_mode_refuses_a_class_folder_other_users_can_read(tmp_path, monkeypatch, capsys):
    from grading import grade_class
    from grading import sandbox

    shared = Path(tempfile.mkdtemp())  # reachable by every user, as a folder under /home or /srv often is
    try:
        shared.chmod(0o755)
        folder = _class(shared / "class")
        folder.chmod(0o755)
        monkeypatch.setattr(sandbox, "pick_mode", lambda name: "user")
        with pytest.raises(SystemExit) as e:
            grade_class.main([str(folder), "-o", str(tmp_path / "graded")])
        assert e.value.code == 2 and f"chmod 700 {folder}" in capsys.readouterr().err
        folder.chmod(0o700)
        assert not sandbox.others_can_read(folder) and sandbox.others_can_read(shared)
    finally:
        shutil.rmtree(shared)


# ---- LMS exports, statuses, and what a rerun grades -------------------------------------------------------------


def _zip_of(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for member, content in files.items():
            zf.writestr(member, content)
    return path


def test_lms_presets_key_students_by_their_user_id_and_grade_the_newest(tmp_path):
    canvas = tmp_path / "canvas"
    canvas.mkdir()
    for name in ("nguyenan_101_9001_hw3.zip", "nguyenan_101_9000_hw3.zip", "nguyenbao_LATE_102_9002_gan.py",
                 "-lee_103_9003_hw3-1.zip"):
        (canvas / name).write_bytes(b"x")
    students = {e.student: e for e in entries(canvas, lms="canvas")}
    assert sorted(students) == ["101", "102", "103"]  # two Nguyens, apart
    assert students["101"].path.name == "nguyenan_101_9001_hw3.zip"
    assert students["101"].others == ("nguyenan_101_9000_hw3.zip",) and students["101"].name == "nguyenan"
    assert students["102"].late and not students["101"].late
    moodle = tmp_path / "moodle"
    (moodle / "An Nguyen_5501_assignsubmission_file_").mkdir(parents=True)
    (moodle / "Bao Nguyen_5502_assignsubmission_file_hw3.zip").write_bytes(b"x")
    assert [(e.student, e.name) for e in entries(moodle, lms="moodle")] == [("5501", "An Nguyen"),
                                                                            ("5502", "Bao Nguyen")]
    blackboard = tmp_path / "blackboard"
    blackboard.mkdir()
    for name in ("HW3_anguyen_attempt_2026-03-01-10-00-00_hw3.zip", "HW3_anguyen_attempt_2026-03-02-09-00-00_hw3.zip",
                 "HW3_anguyen_attempt_2026-03-02-09-00-00.txt", "HW3_bnguyen_attempt_2026-03-01-11-00-00_gan.py"):
        (blackboard / name).write_bytes(b"x")
    students = {e.student: e for e in entries(blackboard, lms="blackboard")}
    assert sorted(students) == ["anguyen", "bnguyen"]  # the attempt receipts are not submissions
    assert students["anguyen"].path.name == "HW3_anguyen_attempt_2026-03-02-09-00-00_hw3.zip"
    with pytest.raises(BatchError, match="--lms canvas matches no student"):
        entries(moodle, lms="canvas")


def test_failed_gradings_need_attention_a_rerun_completes_them_and_a_hang_costs_one_time_limit(tmp_path, monkeypatch,
                                                                                                capsys):
    """A child killed from outside and a crash of python -m grading grade itself: listed, never scored, retried; a
    changed submission is regraded; a student whose three problems hang waits out one time limit, not three."""
    from grading import grade_class
    from grading import batch

    marker = tmp_path / "faults-on"
    marker.write_text("")
    folder = tmp_path / "class"
    folder.mkdir()
    killed = REFERENCE + f"\nimport os, signal\nif os.path.exists({str(marker)!r}):\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    (folder / "-ann_201_1_gan.py").write_text(REFERENCE)  # a bare gan.py whose name starts with "-"
    _zip_of(folder / "ben_202_2_hw3.zip", _files(killed))  # its child dies of a signal the grader did not send
    crashing = tmp_path / "grade_wrapper.py"  # the grading's process, killed itself while it grades dan
    crashing.write_text(f"""import os, runpy, signal, sys
if "dan_204" in " ".join(sys.argv) and os.path.exists({str(marker)!r}):
    os.kill(os.getpid(), signal.SIGKILL)
sys.argv[1:1] = ["grade"]
sys.path.insert(0, {str(ROOT)!r})
runpy.run_module("grading", run_name="__main__", alter_sys=True)
""")
    no_code = {k: v for k, v in _files("").items() if k != "codebase/gan.py"}  # graded without children
    _zip_of(folder / "dan_204_4_hw3.zip", no_code)
    _zip_of(folder / "eve_205_5_hw3.zip", no_code)
    # its three problems wait forever, all at once
    _zip_of(folder / "hal_206_6_hw3.zip", _files(REFERENCE + "\nimport time\ntime.sleep(600)\n"))
    monkeypatch.setattr(batch, "GRADE", [sys.executable, str(crashing)])
    for name, value in UNJUDGED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(folder)
    out = tmp_path / "graded"
    command = [".", "-o", str(out), "--lms", "canvas", "--sandbox", "process", "--jobs", "2", "--timeout", "20"]
    with pytest.raises(SystemExit) as e:
        grade_class.main(command)
    assert e.value.code and "need attention: 202, 204" in str(e.value.code)
    assert not out.stat().st_mode & 0o077  # -o made private from the start
    rows = {row["student"]: row for row in _grades(out / "grades.csv")}
    assert rows["202"]["status"] == rows["204"]["status"] == "needs attention"
    assert rows["202"]["total"] == rows["204"]["total"] == ""  # never a score
    assert rows["201"]["total"] == "35" and rows["201"]["name"] == "'-ann" and rows["206"]["total"] == "0"
    hanging = json.loads((out / "results" / "206.json").read_text())
    assert all("time limit of 20 s" in t["output"] for t in hanging["tests"] if t["max_score"])
    # its three problems waited out one limit together (20 s and start-up), not one after another (60 s and more)
    assert hanging["execution_time"] < 2.5 * 20
    marker.unlink()  # the faults are over
    before = json.loads((out / "results" / "205.json").read_text())["extra_data"]["submission_sha256"]
    again = io.BytesIO()
    Image.new("RGB", (302, 302), "white").save(again, "PNG")
    grid = next(name for name in no_code if name.endswith(".png"))
    _zip_of(folder / "eve_205_5_hw3.zip", {**no_code, grid: again.getvalue()})  # another grid, and still no code
    capsys.readouterr()
    grade_class.main(command)  # exits 0: everyone graded
    assert "2 already graded, 3 to grade" in capsys.readouterr().out  # 202, 204, and 205's changed submission
    assert json.loads((out / "results" / "205.json").read_text())["extra_data"]["submission_sha256"] != before
    rows = {row["student"]: row for row in _grades(out / "grades.csv")}
    assert {s: r["total"] for s, r in rows.items()} == {"201": "35", "202": "35", "204": "0", "205": "0",
                                                        "206": "0"}
    assert all(r["status"] == "graded" for r in rows.values())
    capsys.readouterr()
    grade_class.main([*command, "--regrade", "205"])  # no gan.py: a grading without children
    assert "4 already graded, 1 to grade" in capsys.readouterr().out


def test_blackboard_usernames_may_hold_underscores(tmp_path):
    export = tmp_path / "blackboard"
    export.mkdir()
    for name in ("GAN_HW_3_john_smith_attempt_2026-03-01-10-00-00_hw3.zip",
                 "GAN_HW_3_mary_smith_attempt_2026-03-01-11-00-00_hw3.zip",
                 "GAN_HW_3_mary_smith_attempt_2026-03-02-11-00-00_hw3.zip", "GAN_HW_3_lee_attempt_2026-03-01-12-00-00_gan.py"):
        (export / name).write_bytes(b"x")
    students = {e.student: e for e in entries(export, lms="blackboard")}
    assert sorted(students) == ["john_smith", "lee", "mary_smith"]
    assert students["mary_smith"].others == ("GAN_HW_3_mary_smith_attempt_2026-03-01-11-00-00_hw3.zip",)
    alone = tmp_path / "alone"  # one student: the attempt receipt says where the username begins
    alone.mkdir()
    (alone / "GAN_HW_3_john_smith_attempt_2026-03-01-10-00-00_hw3.zip").write_bytes(b"x")
    (alone / "GAN_HW_3_john_smith_attempt_2026-03-01-10-00-00.txt").write_text(
        "Name: John Smith (john_smith)\nAssignment: GAN HW 3\nDate Submitted: Sunday, 1 March 2026 10:00:00\n")
    assert [e.student for e in entries(alone, lms="blackboard")] == ["john_smith"]


def test_students_whose_names_differ_only_in_punctuation_stay_apart(tmp_path):
    export = tmp_path / "named"
    export.mkdir()
    for name in ("D'Souza Ryan.zip", "D Souza Ryan.zip"):
        (export / name).write_bytes(b"x")
    found = entries(export)
    assert sorted(e.student for e in found) == ["D Souza Ryan", "D'Souza Ryan"]
    assert len({e.file_name for e in found}) == 2


# ---- A submission is every file of one attempt ------------------------------------------------------------------

def _write(folder: Path, files: dict[str, bytes | str]) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return folder


def test_each_preset_groups_the_files_of_one_attempt_and_never_grades_a_document(tmp_path):
    """On main at 712f5a9 the PDF beside gan.py, the online text beside the file folder and a lone gan.py attachment
    beside hw3.zip were each graded in place of the work."""
    canvas = _write(tmp_path / "canvas", {
        "leeann_2001_9001_gan.py": "x", "leeann_2001_9001_writeup.pdf": "%PDF",  # one submission, two attachments
        "o_brienpat_late_2002_9100_hw3.zip": "x", "o_brienpat_late_2002_9100_gan.py": "x",  # an underscore in a name
        "kimsun_2003_text.html": "<p>code pasted here</p>", "parkjo_2004_link.html": "<a>",
        "anon_Xy7Qa_9200_hw3.zip": "x"})  # anonymous grading
    found = {e.student: e for e in entries(canvas, lms="canvas")}
    assert sorted(found) == ["2001", "2002", "2003", "2004", "anon_Xy7Qa"]
    assert found["2001"].path.name == "leeann_2001_9001_gan.py" and found["2001"].ignored == (
        "writeup.pdf (a document)",)
    assert found["2002"].parts == (("o_brienpat_late_2002_9100_gan.py", "gan.py"),
                                   ("o_brienpat_late_2002_9100_hw3.zip", "hw3.zip"))
    assert found["2002"].late and found["2002"].name == "o_brienpat"
    assert found["2003"].no_code and found["2003"].ignored == ("text.html (a text entry)",)
    assert found["2004"].no_code and not found["2001"].no_code
    moodle = _write(tmp_path / "moodle", {
        "Ann Lee_3001_assignsubmission_file_/hw3/codebase/gan.py": "x",
        "Ann Lee_3001_assignsubmission_onlinetext_/onlinetext.html": "<p>see the file</p>",
        "Bo Wu_3002_assignsubmission_file_gan.py": "x", "Bo Wu_3002_assignsubmission_file_report.pdf": "%PDF",
        "Team A-Cy Do_3003_assignsubmission_file_hw3.zip": "x",  # a team member's own copy
        "Cy Do_3003_assignfeedback_comments_feedback.html": "old feedback"})
    found = {e.student: e for e in entries(moodle, lms="moodle")}
    assert found["3001"].path.name == "Ann Lee_3001_assignsubmission_file_" and found["3001"].ignored == (
        "onlinetext (an online text entry)",)
    assert found["3002"].path.name == "Bo Wu_3002_assignsubmission_file_gan.py"
    assert found["3003"].path.name.endswith("hw3.zip") and found["3003"].ignored == ()
    blackboard = _write(tmp_path / "blackboard", {
        "HW 3_mary_smith_attempt_2026-03-01-10-00-00.txt": "Name: Mary Smith (mary_smith)",
        "HW 3_mary_smith_attempt_2026-03-01-10-00-00_gan.py": "x",
        "HW 3_mary_smith_attempt_2026-03-01-10-00-00_hw3.zip": "x",
        "HW 3_mary_smith_attempt_2026-03-02-10-00-00.txt": "Name: Mary Smith (mary_smith)",
        "HW 3_mary_smith_attempt_2026-03-02-10-00-00_writeup.pdf": "%PDF",  # a later attempt of the write-up only
        "HW 3_john_smith_attempt_2026-03-01-09-00-00_hw3.zip": "x"})
    found = {e.student: e for e in entries(blackboard, lms="blackboard")}
    assert sorted(found) == ["john_smith", "mary_smith"]
    assert [name for name, _ in found["mary_smith"].parts] == [
        "HW 3_mary_smith_attempt_2026-03-01-10-00-00_gan.py", "HW 3_mary_smith_attempt_2026-03-01-10-00-00_hw3.zip"]
    assert found["mary_smith"].ignored == ("writeup.pdf (a document)",)
