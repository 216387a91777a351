"""The jail on a shared machine (grading/sandbox/jail.py): graders of other versions build their own beside it
and never remove one in use; a jail removed in part is detected and rebuilt, never used."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grading import autograder_zip
from grading.sandbox import jail
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the jail is built by root")


def _other_version(tmp_path: Path, name: str) -> Path:
    """A copy of the grader with one line of jail.py changed: another grader version, with a jail of its own."""
    deploy = tmp_path / name
    for file in autograder_zip.grader_files():
        (deploy / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / file, deploy / file)
    source = deploy / "grading" / "sandbox" / "jail.py"
    source.write_text(source.read_text() + f"\n# {name}\n")
    return deploy


def _in(deploy: Path, code: str) -> str:
    run = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(deploy)!r})\n{code}"],
                         capture_output=True, text=True, timeout=600, cwd=deploy)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_another_version_builds_its_own_jail_and_removes_none_in_use_and_a_partial_jail_is_rebuilt(tmp_path):
    mine = jail.prepare()  # held by this process from here on
    other = _other_version(tmp_path, "other")
    theirs = Path(_in(other, "from grading.sandbox import jail; print(jail.prepare())"))
    assert theirs != mine and (theirs / ".complete").is_file()
    assert jail.ready() == mine and jail.whole(mine)  # on main at 712f5a9 the other version removed it

    # A removal interrupted half-way (as an older grader's in-place removal left it): never used, rebuilt.
    packages = next(p for p in theirs.rglob("site-packages") if p.is_dir())
    for entry in sorted(packages.iterdir())[: len(list(packages.iterdir())) // 2]:
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    assert _in(other, "from grading.sandbox import jail; print(jail.hold())") == "None"
    rebuilt = Path(_in(other, "from grading.sandbox import jail; print(jail.prepare())"))
    assert rebuilt == theirs and len(list(packages.iterdir())) == \
        json.loads((theirs / ".complete").read_text())[str(packages.relative_to(theirs))]

    # Once no grader holds it and it has been idle, it is removed, and never the jail this process holds. (Idle:
    # its lock file dated back; the jails of other graders on this machine keep their own dates.)
    idle = jail.IDLE_SECONDS + 60
    os.utime(theirs.with_name(theirs.name + ".lock"), (time.time() - idle, time.time() - idle))
    jail.remove_unheld()
    assert not theirs.exists() and mine.is_dir() and jail.whole(mine)
    assert not [p for p in jail.STATE.iterdir() if p.name.startswith((".building-", ".removing-"))]
