"""Reading an upload (grading/submission.py), without running any of it: only the graded members are read, unsafe
ones refused, honest layouts read alike wherever the work lies, no rule guessing between two projects, and the
cost bounded by the upload, not by what it expands to (each costly reading runs in a fresh process, whose peak
memory is compared with reading an honest hw3.zip)."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grading import submission
from tests.conftest import GRADE, GRIDS, REFERENCE, ROOT, VARIANT, make_zip, png
from tests.grading.exports import zip_bytes


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
    honest = make_zip(tmp_path / "honest.zip", {"codebase/gan.py": REFERENCE, **GRIDS})
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
    honest = make_zip(tmp_path / "honest.zip", {"codebase/gan.py": REFERENCE, **GRIDS})
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
    read = submission.read_submission(make_zip(tmp_path / "hw3.zip", members))
    assert read.members[submission.GAN] == REFERENCE.encode() and read.ambiguous is None
    assert any("the starter's gan.py, unchanged" in note for note in read.notes), read.notes


def test_codebase_gan_py_wins_over_an_older_attempt_elsewhere(tmp_path):
    old = REFERENCE.replace("F.softplus(-d(x_fake)).mean()", "-F.softplus(d(x_fake)).mean()", 1)
    members = {"hw3/codebase/gan.py": REFERENCE, "hw3/old/gan.py": old, **{f"hw3/{k}": v for k, v in GRIDS.items()}}
    read = submission.read_submission(make_zip(tmp_path / "hw3.zip", members))
    assert read.members[submission.GAN] == REFERENCE.encode() and read.ambiguous is None
    assert any("hw3/old/gan.py (another gan.py; graded: hw3/codebase/gan.py)" in note for note in read.notes)


def test_of_two_projects_the_one_beside_the_grids_is_graded_and_else_a_human_decides(tmp_path):
    old = REFERENCE.replace("F.softplus(-d(x_fake)).mean()", "-F.softplus(d(x_fake)).mean()", 1)
    members = {"final/codebase/gan.py": REFERENCE, "draft/codebase/gan.py": old,
               **{f"final/{k}": v for k, v in GRIDS.items()}}
    read = submission.read_submission(make_zip(tmp_path / "a.zip", members))
    assert read.members[submission.GAN] == REFERENCE.encode() and read.ambiguous is None
    del members["final/out_nonsaturating/fake_0500.png"], members["final/out_wasserstein_gp/fake_0500.png"]
    members.update({f"draft/{k}": v for k, v in GRIDS.items() if "wasserstein" in k})  # grids in both
    read = submission.read_submission(make_zip(tmp_path / "b.zip", members))
    assert read.ambiguous and "final/codebase/gan.py" in read.ambiguous and "draft/codebase/gan.py" in read.ambiguous


def test_an_ambiguous_submission_is_for_a_human_not_a_zero(tmp_path):
    old = REFERENCE.replace("F.softplus(-d(x_fake)).mean()", "-F.softplus(d(x_fake)).mean()", 1)
    upload = make_zip(tmp_path / "hw3.zip", {"a/codebase/gan.py": REFERENCE, "b/codebase/gan.py": old})
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


def test_reader_keeps_the_allowlist_and_never_writes_the_rest(tmp_path):
    members = {"codebase/gan.py": REFERENCE, **GRIDS, "conftest.py": "x", "pytest.ini": "[pytest]",
               "sitecustomize.py": "x", "codebase/": ""}
    sub = submission.read_submission(make_zip(tmp_path / "hw3.zip", members))
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
    sub = submission.read_submission(make_zip(tmp_path / "hw3.zip", {name: "/etc/passwd"}, **flags))
    assert not isinstance(sub.members.get("codebase/gan.py"), bytes)
    assert reason in sub.members["codebase/gan.py"]


def test_reader_rejects_duplicates_and_zip_bombs(tmp_path):
    path = make_zip(tmp_path / "hw3.zip", {"codebase/gan.py": REFERENCE})
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("codebase/gan.py", "print('second copy')")
        zf.writestr("out_nonsaturating/fake_0500.png", bytes(100 << 20))  # 100 MB of zeros, 100 KB compressed
    assert path.stat().st_size < 1 << 20
    sub = submission.read_submission(path)
    assert "appears 2 times" in sub.members["codebase/gan.py"]
    assert "over the" in sub.members["out_nonsaturating/fake_0500.png"]


def test_reader_caps_the_names_it_lists_and_survives_non_zips(tmp_path, monkeypatch):
    monkeypatch.setattr(submission, "MAX_LISTED", 100)
    many = make_zip(tmp_path / "many.zip", {f"f{i}.txt": "" for i in range(101)})
    assert "over 100 files: not graded" in submission.read_submission(many).fatal
    (tmp_path / "folder").mkdir()
    for i in range(101):
        (tmp_path / "folder" / f"f{i}.txt").write_text("")
    assert "over 100 files: not graded" in submission.read_submission(tmp_path / "folder").fatal
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    assert "cannot read the submission as a ZIP" in submission.read_submission(junk).fatal


@pytest.mark.parametrize("data, problem", [
    (png(), None),
    (png(10, 10), "10x10 pixels"),
    (png(4000, 30), "4000x30 pixels"),
    (png()[:200], "not a valid PNG"),
    (b"\x89PNG\r\n\x1a\n" + bytes(50), "not a valid PNG"),
    (b"GIF89a", "not a valid PNG"),
])
def test_grids_must_be_valid_pngs_of_sane_size(data, problem):
    verdict = submission.check_grid(("out_nonsaturating/fake_0500.png", data), "out_nonsaturating")
    assert verdict is None if problem is None else problem in verdict


def test_the_final_grid_is_the_highest_step(tmp_path):
    members = {"out_nonsaturating/fake_0900.png": b"broken", "out_nonsaturating/fake_1000.png": png()}
    sub = submission.read_submission(make_zip(tmp_path / "hw3.zip", members))
    assert sub.grid("out_nonsaturating") == ("out_nonsaturating/fake_1000.png", png())
    assert sub.grid("out_wasserstein_gp") is None


def _gan_and_grid(sub) -> tuple:
    return sub.members.get("codebase/gan.py"), sub.grid("out_nonsaturating")


@pytest.mark.parametrize("layout", ["plain", "one folder (starter, macOS Compress)", "backslashes (PowerShell 5.1)",
                                    "folder and backslashes", "with OS junk"])
def test_honest_zip_layouts_are_read_alike(tmp_path, layout):
    members = {"codebase/gan.py": REFERENCE, "out_nonsaturating/fake_0937.png": png()}
    if "folder" in layout:
        members = {f"hw3/{k}": v for k, v in members.items()}
    if "backslashes" in layout:
        members = {k.replace("/", "\\"): v for k, v in members.items()}
    if "junk" in layout:
        members.update({"__MACOSX/codebase/._gan.py": "junk", ".DS_Store": "junk", "codebase/.DS_Store": "junk"})
    sub = submission.read_submission(make_zip(tmp_path / "hw3.zip", members))
    assert _gan_and_grid(sub) == (REFERENCE.encode(), ("out_nonsaturating/fake_0937.png", png()))
    assert not sub.notes and sub.fatal is None


def test_a_folder_of_loose_files_is_read_like_a_zip(tmp_path):
    for root in (tmp_path / "loose", tmp_path / "nested" / "hw3"):
        (root / "codebase").mkdir(parents=True)
        (root / "codebase" / "gan.py").write_text(REFERENCE)
        (root / "out_nonsaturating").mkdir()
        (root / "out_nonsaturating" / "fake_0937.png").write_bytes(png())
    for folder in (tmp_path / "loose", tmp_path / "nested"):
        sub = submission.read_submission(folder)
        assert _gan_and_grid(sub) == (REFERENCE.encode(), ("out_nonsaturating/fake_0937.png", png()))
    (tmp_path / "loose" / "codebase" / "gan.py").unlink()
    (tmp_path / "loose" / "codebase" / "gan.py").symlink_to("/etc/passwd")
    assert "a symbolic link" in submission.read_submission(tmp_path / "loose").members["codebase/gan.py"]


def test_two_different_gan_py_are_not_guessed_between_and_copies_are_one(tmp_path):
    members = {"a/codebase/gan.py": REFERENCE, "b/codebase/gan.py": VARIANT}
    verdict = submission.read_submission(make_zip(tmp_path / "hw3.zip", members)).members["codebase/gan.py"]
    assert "two different gan.py files, a/codebase/gan.py and b/codebase/gan.py" in verdict
    members = {"a/codebase/gan.py": REFERENCE, "backup/gan.py": REFERENCE}
    assert submission.read_submission(make_zip(tmp_path / "hw3.zip", members)).members["codebase/gan.py"] == \
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
            (root / run / f"fake_{step:04d}.png").write_bytes(png())
        (root / run / "checkpoint.pt").write_bytes(os.urandom(1 << 20))
        (root / run / "losses.csv").write_text("step,d_loss,g_loss\n")
    return root


@pytest.mark.parametrize("layout", ["bare gan.py from an LMS", "gan.py alone in a folder", "gan.py beside hw3.zip",
                                    "Windows extract-all zipped again", "whole work folder", "ZIP holding hw3.zip"])
def test_honest_uploads_are_found_wherever_the_work_is(tmp_path, layout):
    hw3 = make_zip(tmp_path / "hw3.zip", {"codebase/gan.py": REFERENCE, "out_nonsaturating/fake_0937.png": png()})
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
        path = make_zip(upload / "hw3_starter.zip", {"hw3_starter/hw3/codebase/gan.py": REFERENCE,
                                                 "hw3_starter/hw3/out_nonsaturating/fake_0937.png": png()})
    elif layout == "whole work folder":
        work = _work_folder(tmp_path / "hw3")
        path = Path(shutil.make_archive(str(upload / "hw3"), "zip", work.parent, work.name))
        with zipfile.ZipFile(path) as zf:
            assert len(zf.infolist()) > 64
    else:
        path = make_zip(upload / "outer.zip", {"hw3.zip": hw3.read_bytes()})
    sub = submission.read_submission(path)
    assert sub.fatal is None and sub.members["codebase/gan.py"] == REFERENCE.encode(), sub.members
    if "gan.py" not in layout.split()[0:2] and "alone" not in layout and "bare" not in layout:
        assert check_grid_passes(sub)


def check_grid_passes(sub) -> bool:
    return submission.check_grid(sub.grid("out_nonsaturating"), "out_nonsaturating") is None
