"""The grades in the import format of the LMS whose export was graded (python -m grading class --lms): OUT/gradebook_<lms>.csv.

- Canvas (Grades > Import): ``Student, ID, SIS User ID, SIS Login ID, Section, <column>`` and a "Points Possible"
  row; students matched by ID, the Canvas user id of the export's file names. A column named "Title (12345)"
  updates assignment 12345; another name creates a new assignment. An export under anonymous grading names
  students anon_<id>, which the import cannot match: their grades go into SpeedGrader, from grades.csv.
- Moodle (the assignment's "Upload grading worksheet"): ``Identifier, Full name, Grade, Maximum Grade,
  Last modified (grade), Feedback comments``; Identifier is "Participant <id>", the id of the export's file names.
- Blackboard (Grade Center > Work Offline > Upload): ``Username, <column> [Total Pts: <max> Score]``; a column named
  "Title |123456" updates column 123456 (create it first: a new column from an upload is a text column).

Scores are points out of the total of the checks (35, plus any grid points), as results.json gives them.

Only students whose grading finished are listed: one whose grading failed keeps its LMS cell as it is.
"""
from __future__ import annotations

import csv
import html
import io
import os
import time
from pathlib import Path

from grading.batch import Entry, csv_cell, status, summary
from grading.status import GRADED

DEFAULT_COLUMN = "GAN homework"


def rows(lms: str, column: str, students: list[Entry], results: dict[str, dict]) -> list[list[str]]:
    graded = [(e, results[e.student]) for e in students if e.student in results and status(results[e.student]) ==
              GRADED]
    top = max((sum(t["max_score"] for t in c.get("tests", [])) for _, c in graded), default=0)
    if lms == "canvas":
        table = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column],
                 ["Points Possible", "", "", "", "", f"{top:g}"]]
        table += [[csv_cell(e.name), e.student, "", "", "", f"{c['score']:g}"] for e, c in graded
                  if e.student.isdigit()]  # an anonymous id (anon_...) is no user id: SpeedGrader takes those
    elif lms == "moodle":
        table = [["Identifier", "Full name", "Grade", "Maximum Grade", "Last modified (grade)", "Feedback comments"]]
        now = time.strftime("%A, %d %B %Y, %I:%M %p")  # newer than the grades it replaces, as Moodle writes dates
        table += [[f"Participant {e.student}", csv_cell(e.name), f"{c['score']:.2f}", f"{top:.2f}", now,
                   csv_cell(html.escape(summary(e, c)["notes"]))] for e, c in graded]  # Moodle shows feedback as HTML
    elif lms == "blackboard":
        name, _, column_id = column.partition("|")
        header = f"{name.strip()} [Total Pts: {top:g} Score]" + (f" |{column_id.strip()}" if column_id else "")
        table = [["Username", header]] + [[csv_cell(e.student), f"{c['score']:g}"] for e, c in graded]
    else:
        raise ValueError(f"no gradebook format for {lms!r}")
    return table


def write(out: Path, lms: str, column: str, students: list[Entry], results: dict[str, dict]) -> Path:
    """Write OUT/gradebook_<lms>.csv atomically; returns its path."""
    buffer = io.StringIO()
    quoting = csv.QUOTE_ALL if lms == "blackboard" else csv.QUOTE_MINIMAL
    csv.writer(buffer, lineterminator="\n", quoting=quoting).writerows(rows(lms, column, students, results))
    path = out / f"gradebook_{lms}.csv"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
    return path
