"""Build the student starter ZIP from the solution.

    python -m grading handout                      # writes hw3_starter.zip, which unzips into hw3/
    python -m grading handout -o dist/starter.zip --hints full

The starter holds the files in STARTER -- what a student needs to train, sample, check and submit -- and nothing
of the grading suite. In its Python files, each solution region

    # BEGIN SOLUTION: <full hint: how to write it>
    # HANDOUT: <handout hint: the formulas in the handout's notation, the shapes, what to return>
    ...solution code...
    # END SOLUTION

becomes ``raise NotImplementedError("<function>: <hint>")`` at the region's indentation, with the hint the course
chooses (``--hints none|handout|full``, default handout). The same level sets what the public checks
(tests/test_losses.py) say when one fails: none what they saw, handout also what it means in the handout's terms,
full also how to write it (below full, the file holds no such text: pytest shows a failing test's source). In its other text files (setup.sh), the lines from ``# BEGIN GRADER`` to ``# END GRADER`` are the
instructors' and are left out. The ZIP is deterministic: the same sources give the
same bytes.
"""
from __future__ import annotations

import argparse
import re
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = "hw3"  # folder the starter unzips into
STARTER = (
    "README.md", "requirements.txt", "setup.sh", "make_submission.sh", "run_gan.py", "run_conditional_gan.py",
    "codebase/__init__.py", "codebase/gan.py", "codebase/network.py", "codebase/data.py", "codebase/config.py",
    "codebase/train.py", "codebase/outputs.py", "codebase/cli.py",
    # Sample-quality metrics: training ends by writing metrics.json, and students can compare runs.
    "codebase/metrics.py", "codebase/classifier.py", "codebase/assets/fmnist_classifier.pt", "codebase/evaluate.py",
    "codebase/checkpoint.py", "codebase/diagnostics.py",
    "tests/test_losses.py",  # the public checks a student runs before submitting
)
SOURCES = {"README.md": "docs/starter_README.md"}  # starter files whose content comes from another file
_GRADER = re.compile(r"^# BEGIN GRADER\b.*?^# END GRADER[^\n]*\n", flags=re.M | re.S)  # instructors' lines
PUBLIC_CHECKS = "tests/test_losses.py"  # its HINTS line takes the course's hint level too
_HINTS_LINE = re.compile(r'^HINTS = "handout"', flags=re.M)
_FULL_HINTS = re.compile(r"^# BEGIN FULL HINTS\b.*?^# END FULL HINTS[^\n]*\n", flags=re.M | re.S)  # code, by message
_BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION(?::[ \t]*(?P<hint>.*?))?[ \t]*$")
_END = re.compile(r"^[ \t]*# END SOLUTION[ \t]*$")
_DEF = re.compile(r"^(?P<indent>[ \t]*)(?:async[ \t]+)?def[ \t]+(?P<name>\w+)")


HINTS = ("none", "handout", "full")
_HANDOUT = re.compile(r"^[ \t]*# HANDOUT:[ \t]*(?P<hint>.*?)[ \t]*$")


def stub_solutions(source: str, path: str = "<source>", hints: str = "handout") -> str:
    """``source`` with every solution region replaced by a NotImplementedError stub that carries a hint:
    ``full`` the BEGIN line's (how to write it), ``handout`` the region's ``# HANDOUT:`` line (what the handout
    states: the formulas in its notation, the shapes, what to return), ``none`` no hint."""
    if hints not in HINTS:
        raise ValueError(f"hints must be one of {', '.join(HINTS)}, got {hints!r}")
    out: list[str] = []
    begin = None  # line number of the open region's BEGIN
    indent = function = full = handout = ""  # of the open region
    for number, line in enumerate(source.splitlines(keepends=True), 1):
        if _END.match(line):
            if begin is None:
                raise ValueError(f"{path}:{number}: END SOLUTION without BEGIN SOLUTION")
            chosen = {"full": full, "handout": handout, "none": None}[hints] or "write this part"
            out.append(f"{indent}raise NotImplementedError({f'{function}: {chosen}'!r})\n")
            begin = None
        elif match := _BEGIN.match(line):
            if begin is not None:
                raise ValueError(f"{path}:{number}: BEGIN SOLUTION inside the region opened at line {begin}")
            begin, indent = number, match["indent"]
            function = _enclosing_function(out, len(indent))
            full, handout = match["hint"], ""
        elif begin is not None:
            if (found := _HANDOUT.match(line)) and not handout:
                handout = found["hint"]
        else:
            out.append(line)
    if begin is not None:
        raise ValueError(f"{path}:{begin}: BEGIN SOLUTION is never closed")
    return "".join(out)


def _enclosing_function(lines: list[str], indent: int) -> str:
    for line in reversed(lines):
        match = _DEF.match(line)
        if match and len(match["indent"]) < indent:
            return match["name"]
    return "this part"


def starter_files(root: Path = ROOT, names: tuple[str, ...] | list[str] = STARTER, hints: str = "handout"
                  ) -> dict[str, tuple[bytes, int]]:
    """{path: (content, permission bits)} for the starter's files ``names``, with their solutions stubbed."""
    files = {}
    missing = [name for name in names if not (root / SOURCES.get(name, name)).is_file()]
    if missing:
        raise FileNotFoundError(f"starter files missing from {root}: {', '.join(missing)}")
    for name in names:
        path = root / SOURCES.get(name, name)
        content = path.read_bytes()
        if name.endswith(".py"):
            content = stub_solutions(content.decode(), name, hints).encode()
        if name == PUBLIC_CHECKS:
            text, count = _HINTS_LINE.subn(f'HINTS = "{hints}"', content.decode())
            if count != 1:
                raise ValueError(f'{name}: expected one line starting HINTS = "handout", found {count}')
            if hints != "full":  # pytest shows a failing test's source: no recipe may stand in it
                text, count = _FULL_HINTS.subn("FULL = {}  # how to write it: not given at this course's hint level\n",
                                               text)
                if count != 1:
                    raise ValueError(f"{name}: expected one # BEGIN FULL HINTS ... # END FULL HINTS block, found {count}")
            content = text.encode()
        elif b"# BEGIN SOLUTION" in content or b"# END SOLUTION" in content:
            raise ValueError(f"{name}: solution markers are only understood in Python files")
        elif b"# BEGIN GRADER" in content or b"# END GRADER" in content:
            content = _GRADER.sub("", content.decode()).encode()
            if b"# BEGIN GRADER" in content or b"# END GRADER" in content:
                raise ValueError(f"{name}: unbalanced # BEGIN GRADER / # END GRADER lines")
        files[name] = (content, 0o755 if path.stat().st_mode & 0o111 else 0o644)
    return files


def build(out: Path, root: Path = ROOT, hints: str = "handout") -> list[str]:
    """Write the starter ZIP to ``out``, its stubs with ``hints``; returns the member names."""
    out.parent.mkdir(parents=True, exist_ok=True)
    names = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, (content, mode) in sorted(starter_files(root, hints=hints).items()):
            info = zipfile.ZipInfo(f"{TOP}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16  # regular file with its permission bits
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
            names.append(info.filename)
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=Path("hw3_starter.zip"), help="ZIP to write")
    parser.add_argument("--hints", choices=HINTS, default="handout",
                        help="what each stub says: handout (default) the handout's formulas, shapes and what to "
                             "return; full also how to write it (and the classic mistakes to avoid); none nothing")
    args = parser.parse_args(argv)
    names = build(args.out, hints=args.hints)
    print(f"wrote {args.out} ({len(names)} files)")


if __name__ == "__main__":
    main()
