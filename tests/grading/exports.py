"""A class of 26 students, laid out as Canvas, Moodle and Blackboard export it (``build``), with what grading it
must give (``EXPECTED``).

Sixteen independently written correct solutions (tests/grading/classmates.py and a variant), three disguised copies
(one with its source's grids mirrored), two wrong solutions written apart from the others, the starter handed in unchanged, and four uploads no
rule can grade; the honest ones handed in every way students do: hw3.zip, a loose gan.py beside it, a write-up
beside the code, the whole course folder with the starter ZIP inside, an older attempt in old/, a ZIP of hw3.zip,
late, twice. Names include an apostrophe, one that differs from it only there, a formula, and Blackboard usernames
with underscores. Grids are Fashion-MNIST test images, blurred and noised, per student: healthy, never copies.
"""
from __future__ import annotations

import io
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from codebase.data import load_fashion_mnist
from codebase.outputs import save_grid_image
from grading import handout
from grading.submission import RUNS
from tests.conftest import ROOT
from tests.grading import classmates

LMS = ("canvas", "moodle", "blackboard")


@dataclass
class Student:
    name: str  # as the LMS shows it, first name first
    uid: int  # Canvas user id, Moodle participant id
    username: str  # Blackboard
    attempts: list[dict[str, bytes]]  # oldest first: the files of each, by the name the student gave them
    late: bool = False
    text: str | None = None  # an online text entry, in place of files
    expect: object = 35  # the total, or "human"
    copy_of: str | None = None  # the username of the student this one copied
    graded: str | None = None  # the gan.py the grader must find in the newest attempt (None: for a human)

    @property
    def sortable(self) -> str:  # Canvas: "last first", lower-cased, non-word characters dropped
        first, _, last = self.name.strip().partition(" ")
        return re.sub(r"[^\w]", "", f"{last}{first}").lower()


def zip_bytes(members: dict[str, bytes | str]) -> bytes:
    """A ZIP of ``members`` (name: content), in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buffer.getvalue()


_TEST_SET: list = []


def grids(seed: int, mirrored: bool = False) -> dict[str, bytes]:
    """The three final grids of a student's runs: blurred, noised Fashion-MNIST test images (column c of 3.2 shows
    class c), different for every seed."""
    if not _TEST_SET:
        _TEST_SET.extend(load_fashion_mnist("test"))
    x, y = _TEST_SET
    g = torch.Generator().manual_seed(seed)
    found = {}
    for problem, run in RUNS.items():
        if problem == "3.2":
            idx = torch.stack([torch.nonzero(y == c).flatten()[torch.randint(0, 1000, (10,), generator=g)]
                               for c in range(10)], 1).flatten()
        else:
            idx = torch.randint(0, len(x), (100,), generator=g)
        images = x[idx].float().div(127.5).sub(1).unsqueeze(1)
        images = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(images, (1, 1, 1, 1), mode="replicate"), 3, 1)
        images = (images + 0.12 * torch.randn(images.shape, generator=g)).clamp(-1, 1)
        with tempfile.TemporaryDirectory() as tmp:
            save_grid_image(images, Path(tmp) / "grid.png")
            png = (Path(tmp) / "grid.png").read_bytes()
        if mirrored:
            from PIL import Image, ImageOps

            out = io.BytesIO()
            ImageOps.mirror(Image.open(io.BytesIO(png))).save(out, "PNG")
            png = out.getvalue()
        found[f"{run}/fake_0937.png"] = png
    return found


def _hw3(gan: str, seed: int, mirrored: bool = False) -> bytes:
    """hw3.zip as make_submission.sh packs it."""
    return zip_bytes({"codebase/gan.py": gan, **grids(seed, mirrored)})


def students() -> list[Student]:
    sol = classmates.solutions()
    sol["variant"] = (ROOT / "tests" / "grading" / "variant_gan.py").read_text()
    starter = handout.starter_files(names=["codebase/gan.py"])["codebase/gan.py"][0].decode()
    concat = (ROOT / "tests" / "grading" / "variant_concat_gan.py").read_text()  # written apart from the others
    func = (ROOT / "tests" / "grading" / "variant_func_gan.py").read_text()
    wrong = concat.replace("return d_loss, F.softplus(-h[b:]).mean()", "return d_loss, -F.softplus(h[b:]).mean()")
    half = func.replace("+ 10 * penalty", "+ 1 * penalty")
    assert wrong != concat and half != func
    pdf = b"%PDF-1.4 write-up"
    c = []
    add = c.append
    add(Student("Ann Lee", 1001, "alee", [{"hw3.zip": _hw3(sol["bce_targets"], 1)}]))
    add(Student("Bo Wu", 1002, "bwu", [{"gan.py": sol["loss_module"].encode(), "hw3.zip": _hw3(sol["loss_module"], 2)}]))
    add(Student("Cy Do", 1003, "cdo", [{"gan.py": sol["logsigmoid_named"].encode(), "writeup.pdf": pdf}]))
    add(Student("Dee Ray", 1004, "dray", [{"hw3_course.zip": zip_bytes({
        "course/hw3/codebase/gan.py": sol["stable_by_hand"], "course/hw3_starter.zip": zip_bytes(
            {"hw3/codebase/gan.py": starter}), **{f"course/hw3/{k}": v for k, v in grids(4).items()}})}]))
    add(Student("Eve Ng", 1005, "eng", [{"hw3.zip": zip_bytes({"hw3/codebase/gan.py": sol["one_call"],
                                                          "hw3/old/gan.py": sol["one_call"].replace("10 * gp", "gp"),
                                                          **{f"hw3/{k}": v for k, v in grids(5).items()}})}]))
    add(Student("Fay Oh", 1006, "foh", [{"submission.zip": zip_bytes({"hw3.zip": _hw3(sol["softplus_sums"], 6)})}]))
    add(Student("Gus Pak", 1007, "gus_pak", [{"hw3.zip": _hw3(sol["helpers"], 7)}], late=True))
    add(Student("Hal Qi", 1008, "hqi", [{"hw3.zip": _hw3(sol["minimal"].replace("GP_LAMBDA", "1"), 8)}, {"hw3.zip": _hw3(sol["probabilities_by_logit"], 8)}]))
    add(Student("Ida Rao", 1009, "irao", [{"hw3.zip": _hw3(sol["two_steps"], 9)}]))
    add(Student("Jo Sim", 1010, "jo_sim", [{"hw3.zip": _hw3(sol["minimal"], 10)}]))
    add(Student("Kai Tan", 1011, "ktan", [{"hw3.zip": _hw3(sol["loop_penalty"], 11)}]))
    add(Student("Lu Uma", 1012, "luma", [{"hw3.zip": _hw3(sol["math_comments"], 12)}]))
    add(Student("Ryan D'Souza", 1013, "rdsouza", [{"hw3.zip": _hw3(sol["bare_softplus"], 13)}]))
    add(Student("Ryan D Souza", 1014, "rdsouza2", [{"hw3.zip": _hw3(sol["bare_logsig"], 14)}]))
    add(Student(" =1+1 Vo", 1015, "vo", [{"hw3.zip": _hw3(sol["bare_named"], 15)}]))
    add(Student("Mo Wei", 1016, "mo_wei", [{"hw3.zip": _hw3(sol["variant"], 16)}]))
    # Copies, disguised: of Gus (helpers), of Ryan D Souza (bare_logsig), and of Dee with Dee's grids mirrored
    add(Student("Nia Xu", 1017, "nxu", [{"hw3.zip": _hw3(classmates.disguise(sol["helpers"], 1), 17)}],
                copy_of="gus_pak"))
    add(Student("Oz Yu", 1018, "oyu", [{"hw3.zip": _hw3(classmates.disguise(sol["bare_logsig"], 2), 18)}],
                copy_of="rdsouza2"))
    add(Student("Pia Zed", 1019, "pzed", [{"hw3.zip": _hw3(classmates.disguise(sol["stable_by_hand"], 3), 4,
                                                           mirrored=True)}], copy_of="dray"))
    # Wrong work, and the starter handed in unchanged
    add(Student("Quin Abe", 1020, "qabe", [{"hw3.zip": _hw3(wrong, 20)}], expect="<35"))
    add(Student("Rae Bo", 1021, "rbo", [{"hw3.zip": _hw3(half, 21)}], expect="<35"))
    add(Student("Sol Cy", 1022, "scy", [{"hw3.zip": zip_bytes({"hw3/codebase/gan.py": starter})}], expect=0))
    # For a human: a corrupt upload, a text entry, a write-up only, two projects and no rule between them
    add(Student("Tia Du", 1023, "tdu", [{"hw3.zip": _hw3(sol["minimal"], 23)[:3000]}], expect="human"))
    add(Student("Uri Ek", 1024, "uek", [], text="<p>def loss_nonsaturating(g, d, x_real, *, device): ...</p>",
                expect="human"))
    add(Student("Val Fu", 1025, "vfu", [{"writeup.pdf": pdf}], expect="human"))
    add(Student("Wes Gi", 1026, "wgi", [{"hw3.zip": zip_bytes({"try1/codebase/gan.py": sol["bare_named"],
                                                          "try2/codebase/gan.py": wrong})}], expect="human"))
    graded = {"Ann Lee": "bce_targets", "Bo Wu": "loss_module", "Cy Do": "logsigmoid_named", "Dee Ray": "stable_by_hand",
              "Eve Ng": "one_call", "Fay Oh": "softplus_sums", "Gus Pak": "helpers", "Hal Qi": "probabilities_by_logit",
              "Ida Rao": "two_steps", "Jo Sim": "minimal", "Kai Tan": "loop_penalty", "Lu Uma": "math_comments",
              "Ryan D'Souza": "bare_softplus", "Ryan D Souza": "bare_logsig", " =1+1 Vo": "bare_named",
              "Mo Wei": "variant"}
    copied = {"Nia Xu": classmates.disguise(sol["helpers"], 1), "Oz Yu": classmates.disguise(sol["bare_logsig"], 2),
              "Pia Zed": classmates.disguise(sol["stable_by_hand"], 3), "Quin Abe": wrong, "Rae Bo": half,
              "Sol Cy": starter}
    for s in c:
        s.graded = sol[graded[s.name]] if s.name in graded else copied.get(s.name)
    return c


def key(student: Student, lms: str) -> str:
    """The student's key in grades.csv for an export of ``lms``."""
    return student.username if lms == "blackboard" else str(student.uid)


def build(folder: Path, lms: str, class_: list[Student] | None = None) -> Path:
    """Lay the class out in ``folder`` as ``lms`` exports it."""
    folder.mkdir(parents=True)
    for s in class_ or students():
        if lms == "canvas":
            stem = f"{s.sortable}{'_late' if s.late else ''}_{s.uid}"
            if s.text is not None:
                (folder / f"{stem}_text.html").write_text(s.text)
            for n, attempt in enumerate(s.attempts):
                for i, (name, content) in enumerate(attempt.items()):
                    (folder / f"{stem}_{50000 + 100 * s.uid + 10 * n}_{name}").write_bytes(content)
        elif lms == "moodle":
            prefix = f"{s.name}_{s.uid}_assignsubmission_"
            if s.text is not None:
                (folder / f"{prefix}onlinetext_").mkdir()
                (folder / f"{prefix}onlinetext_" / "onlinetext.html").write_text(s.text)
            if s.attempts:  # Moodle exports the current attempt only
                (folder / f"{prefix}file_").mkdir()
                for name, content in s.attempts[-1].items():
                    (folder / f"{prefix}file_" / name).write_bytes(content)
        else:
            times = [f"2026-03-{10 + n:02d}-09-3{n}-00" for n in range(max(1, len(s.attempts)))]
            for n, when in enumerate(times):
                stem = f"HW3 GAN_{s.username}_attempt_{when}"
                text = f"\nSubmission Field:\n{s.text}" if s.text and n == len(times) - 1 else ""
                (folder / f"{stem}.txt").write_text(f"Name: {s.name} ({s.username})\nAssignment: HW3 GAN\n"
                                                    f"Date Submitted: {when}{text}\n")
                for name, content in (s.attempts[n] if s.attempts else {}).items():
                    (folder / f"{stem}_{name}").write_bytes(content)
    return folder
