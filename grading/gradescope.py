"""Gradescope's side of the grader: grade $AUTOGRADER_ROOT/submission into $AUTOGRADER_ROOT/results/results.json.

    AUTOGRADER_ROOT=/autograder python -m grading.gradescope     # what run_autograder does

Gradescope unpacks autograder.zip into ROOT/source and a student's upload into ROOT/submission: the files of
hw3.zip (loose, possibly under one folder), or hw3.zip itself. This writes a complete results.json whatever
happens: a placeholder first, then the grading, or a failing result that says what went wrong. The settings
chosen when autograder.zip was built (python -m grading autograder) are in ROOT/source/autograder_config.json.
Before any student code runs, ROOT/source is made private to root and ROOT/results is root's alone, so that
the sandboxed children (a dedicated uid where Docker forbids namespaces) can read neither and write to neither.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from grading import sandbox, scoring

CONFIG = "autograder_config.json"
DEFAULTS = {"timeout": scoring.DEFAULT_TIMEOUT, "parallel": 1, "sandbox": "auto", "after_due_date": [], "grid_points": 0,
            "hints": "handout"}


def load_config(source: Path) -> dict:
    try:
        config = {**DEFAULTS, **json.loads((source / CONFIG).read_text())}
    except FileNotFoundError:
        config = dict(DEFAULTS)
    if env_mode := os.environ.get("GRADER_SANDBOX"):  # forced by a test, or by an instructor's debugging run
        config["sandbox"] = env_mode
    return config


def with_visibility(content: dict, after_due_date: list[str]) -> dict:
    """results.json as Gradescope shows it: plain text only, each problem's checks visible now or after the due
    date, the grader's own stdout hidden. Before the due date no text a student sees tells the points or
    messages of hidden checks: the score line counts only the visible ones."""
    visible = []
    for test in content["tests"]:
        problem = test["number"].rsplit(".", 1)[0]
        test["visibility"] = "after_due_date" if problem in after_due_date else "visible"
        test["output_format"] = "text"
        if problem not in after_due_date:
            visible.append(test)
    lines = content["output"].splitlines()
    if after_due_date and lines and lines[0].startswith("Score "):
        score = sum(t["score"] for t in visible)
        top = sum(t["max_score"] for t in visible)
        shown = ", ".join(sorted(after_due_date))
        lines[0] = (f"Score on the checks shown now: {score:g} / {top:g} (the checks of {shown} are shown after "
                    "the due date).")
        content["output"] = "\n".join(lines)
    content.update(output_format="text", visibility="visible", stdout_visibility="hidden")
    return content


def _protect(root: Path) -> None:
    """ROOT/source and ROOT/results private to root: student code can neither read nor write them."""
    os.chmod(root / "source", 0o700)
    (root / "results").mkdir(exist_ok=True)
    os.chmod(root / "results", 0o700)


def main() -> None:
    root = Path(os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    out = root / "results" / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, sandbox.stop)
    start = time.monotonic()
    config = dict(DEFAULTS)
    try:
        config = load_config(root / "source")
        scoring.write_results(with_visibility(scoring.unfinished(), config["after_due_date"]), out)
        if os.geteuid() == 0:
            _protect(root)
        mode = config["sandbox"]
        if mode == "auto":  # never the process mode here: student code would run as root beside the grader
            try:
                mode = sandbox.pick_mode("bwrap")
            except sandbox.SandboxUnavailable:
                mode = "user"
        content = scoring.grade(root / "submission", float(config["timeout"]), mode, int(config["parallel"]),
                                float(config["grid_points"]), hints=str(config["hints"]))
    except Exception as error:  # noqa: BLE001 - whatever breaks, the student gets a complete result, and no score
        known = (scoring.GradingFailed, sandbox.SandboxUnavailable)
        reason = str(error) if isinstance(error, known) else f"{type(error).__name__}: {error}"
        content = scoring.unfinished(f"the grading failed, not your code ({reason}): please resubmit, or tell the "
                                     "course staff if it fails again")
        print(f"run_autograder: {reason}", file=sys.stderr)
    content["execution_time"] = round(time.monotonic() - start, 1)
    scoring.write_results(with_visibility(content, config["after_due_date"]), out)
    print(content["output"])
    extra = content.get("extra_data", {})
    print(f"status: {extra.get('status')}; sandbox: {extra.get('sandbox')}; bounds: {extra.get('bounds')}")


if __name__ == "__main__":
    main()
