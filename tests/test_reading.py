"""What reading an upload costs the grader (grading/submission.py): bounded by the upload, not by what it expands
to. Each reading runs in a fresh process, whose peak memory is compared with reading an honest hw3.zip."""
import json
import subprocess
import sys
import zipfile

from grading import submission
from tests.conftest import ROOT, GRADE
from tests.grading.exports import zip_bytes
from tests.test_grade import GRIDS, REFERENCE, _zip


def _read(path) -> tuple[float, str | None, float]:
    """(peak memory in MiB, the reader's fatal message, seconds) of reading ``path`` in a fresh process."""
    code = ("import json, sys, time; sys.path.insert(0, sys.argv[2]); "
            "from grading.submission import read_submission; start = time.monotonic(); "
            "sub = read_submission(sys.argv[1]); seconds = time.monotonic() - start; "
            "peak = next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]; "
            "print(json.dumps([int(peak) / 1024, sub.fatal, seconds]))")  # VmHWM: this program's own peak
    run = subprocess.run([sys.executable, "-c", code, str(path), str(ROOT)], capture_output=True, text=True,
                         timeout=600, check=True)
    return tuple(json.loads(run.stdout))


def test_zips_inside_a_zip_are_held_one_at_a_time_and_their_reading_is_budgeted(tmp_path):
    honest = _zip(tmp_path / "honest.zip", {"codebase/gan.py": REFERENCE, **GRIDS})
    baseline, fatal, _ = _read(honest)
    assert fatal is None
    inner = tmp_path / "inner.zip"  # 64 MiB once stored, a few KiB once deflated in the upload
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("checkpoint.pt", bytes(submission.MAX_INNER_ZIP_BYTES - 1024))
    upload = tmp_path / "hw3.zip"
    count = submission.MAX_READ_BYTES // submission.MAX_INNER_ZIP_BYTES + 4
    with zipfile.ZipFile(upload, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("codebase/gan.py", REFERENCE)
        for i in range(count):
            zf.write(inner, f"backup{i}.zip")
    assert upload.stat().st_size < 2 << 20
    peak, fatal, seconds = _read(upload)
    assert fatal is None  # the gan.py beside them is graded; the ZIPs past the budget are not looked into
    assert peak - baseline < 2.5 * (submission.MAX_INNER_ZIP_BYTES >> 20)  # on main at 712f5a9: all of them
    assert seconds < submission.MAX_READ_SECONDS
    read = submission.read_submission(upload)
    assert read.members[submission.GAN] == REFERENCE.encode()
    assert any(note.startswith("not looked into: backup") for note in read.notes)


def test_many_different_gan_py_files_are_compared_by_hash_not_held(tmp_path):
    honest = _zip(tmp_path / "honest.zip", {"codebase/gan.py": REFERENCE, **GRIDS})
    baseline, _, _ = _read(honest)
    upload = tmp_path / "hw3.zip"
    body = REFERENCE + "#" * (submission.MAX_GAN_BYTES - len(REFERENCE) - 100)
    with zipfile.ZipFile(upload, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(400):  # 200 MiB of different gan.py files
            zf.writestr(f"attempt{i}/codebase/gan.py", body + f"\n# {i}\n")
    peak, fatal, _ = _read(upload)
    assert fatal is None
    assert peak - baseline < 50  # on main at 712f5a9 every content was held: 200 MiB
    read = submission.read_submission(upload)
    assert "two different gan.py files" in read.members[submission.GAN]


def test_the_grader_version_covers_the_starter_files_copied_beside_gan_py(tmp_path):
    import shutil

    from grading import autograder_zip

    versions = []
    for name, change in (("same", ""), ("changed", "\n# a line changed in network.py\n")):
        deploy = tmp_path / name
        for file in autograder_zip.grader_files():
            (deploy / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / file, deploy / file)
        (deploy / "codebase" / "network.py").write_text((ROOT / "codebase" / "network.py").read_text() + change)
        run = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                              "from grading.scoring import grader_version; print(grader_version())", str(deploy)],
                             capture_output=True, text=True, check=True, cwd=deploy)
        versions.append(run.stdout.strip())
    from grading.scoring import grader_version

    assert versions[0] == grader_version() != versions[1]  # on main at 712f5a9 the two were equal


def _starter_gan() -> bytes:
    from grading import handout

    return handout.starter_files(names=["codebase/gan.py"])["codebase/gan.py"][0]


def test_the_starters_own_gan_py_is_never_chosen_over_the_work(tmp_path):
    """The whole course folder zipped, with the starter ZIP the student downloaded inside it."""
    starter = tmp_path / "hw3_starter.zip"
    with zipfile.ZipFile(starter, "w") as zf:
        zf.writestr("hw3/codebase/gan.py", _starter_gan())
    members = {"course/hw3/codebase/gan.py": REFERENCE, "course/hw3_starter.zip": starter.read_bytes(),
               **{f"course/hw3/{k}": v for k, v in GRIDS.items()}}
    read = submission.read_submission(_zip(tmp_path / "hw3.zip", members))
    assert read.members[submission.GAN] == REFERENCE.encode() and read.ambiguous is None
    assert any("the starter's gan.py, unchanged" in note for note in read.notes), read.notes


def test_codebase_gan_py_wins_over_an_older_attempt_elsewhere(tmp_path):
    old = REFERENCE.replace("F.softplus(-d(x_fake)).mean()", "-F.softplus(d(x_fake)).mean()", 1)
    members = {"hw3/codebase/gan.py": REFERENCE, "hw3/old/gan.py": old, **{f"hw3/{k}": v for k, v in GRIDS.items()}}
    read = submission.read_submission(_zip(tmp_path / "hw3.zip", members))
    assert read.members[submission.GAN] == REFERENCE.encode() and read.ambiguous is None
    assert any("hw3/old/gan.py (another gan.py; graded: hw3/codebase/gan.py)" in note for note in read.notes)


def test_of_two_projects_the_one_beside_the_grids_is_graded_and_else_a_human_decides(tmp_path):
    old = REFERENCE.replace("F.softplus(-d(x_fake)).mean()", "-F.softplus(d(x_fake)).mean()", 1)
    members = {"final/codebase/gan.py": REFERENCE, "draft/codebase/gan.py": old,
               **{f"final/{k}": v for k, v in GRIDS.items()}}
    read = submission.read_submission(_zip(tmp_path / "a.zip", members))
    assert read.members[submission.GAN] == REFERENCE.encode() and read.ambiguous is None
    del members["final/out_nonsaturating/fake_0500.png"], members["final/out_wasserstein_gp/fake_0500.png"]
    members.update({f"draft/{k}": v for k, v in GRIDS.items() if "wasserstein" in k})  # grids in both
    read = submission.read_submission(_zip(tmp_path / "b.zip", members))
    assert read.ambiguous and "final/codebase/gan.py" in read.ambiguous and "draft/codebase/gan.py" in read.ambiguous


def test_an_ambiguous_submission_is_for_a_human_not_a_zero(tmp_path):
    old = REFERENCE.replace("F.softplus(-d(x_fake)).mean()", "-F.softplus(d(x_fake)).mean()", 1)
    upload = _zip(tmp_path / "hw3.zip", {"a/codebase/gan.py": REFERENCE, "b/codebase/gan.py": old})
    done = subprocess.run([*GRADE, str(upload), "-o", str(tmp_path / "r.json"),
                           "--sandbox", "process"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "needs a human: two different gan.py files" in done.stderr, done.stderr
    extra = json.loads((tmp_path / "r.json").read_text())["extra_data"]
    assert extra["status"] == "needs attention" and "a/codebase/gan.py" in extra["ambiguous"]


def test_a_zip_of_hw3_zip_in_an_lms_folder_is_read_and_deeper_nesting_is_bounded(tmp_path):
    """Moodle's folder layout around a ZIP of hw3.zip: two ZIPs deep (on main at 712f5a9 only one was looked into,
    so the work was "missing")."""
    hw3 = zip_bytes({"codebase/gan.py": REFERENCE, **GRIDS})
    folder = tmp_path / "Ann Lee_3001_assignsubmission_file_"
    folder.mkdir()
    (folder / "submission.zip").write_bytes(zip_bytes({"ann/hw3.zip": hw3, "ann/notes.txt": "hi"}))
    read = submission.read_submission(folder)
    assert read.members[submission.GAN] == REFERENCE.encode() and read.fatal is None
    assert all(read.grid(run) and isinstance(read.grid(run)[1], bytes) for run in submission.RUNS.values())
    deep = hw3
    for level in range(submission.MAX_ZIP_DEPTH + 1):  # one level past the limit
        deep = zip_bytes({f"level{level}.zip": deep})
    (tmp_path / "deep.zip").write_bytes(deep)
    read = submission.read_submission(tmp_path / "deep.zip")
    assert submission.GAN not in read.members and read.fatal is None  # not looked into: no gan.py, no crash


def test_a_corrupt_zip_in_an_lms_folder_is_for_a_human_not_a_zero(tmp_path):
    """Moodle's folder layout around a hw3.zip cut short: on this commit's parent it was graded 0, "no gan.py
    (found: hw3.zip)"."""
    folder = tmp_path / "Tia Du_1023_assignsubmission_file_"
    folder.mkdir()
    (folder / "hw3.zip").write_bytes(zip_bytes({"codebase/gan.py": REFERENCE, **GRIDS})[:3000])
    read = submission.read_submission(folder)
    assert read.unreadable and "hw3.zip cannot be read as a ZIP" in read.unreadable
    (folder / "gan.py").write_text(REFERENCE)  # the work is there all the same: graded
    assert submission.read_submission(folder).unreadable is None
