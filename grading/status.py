"""The statuses of a student's grading, as results.json, python -m grading grade, python -m grading class, grades.csv and the class report
name them.

    graded           a score (results.json's extra_data.status; python -m grading grade exits 0, or 1 for an unreadable upload)
    grading failed   no score: the grading itself failed (no sandbox could run, a child failed before the
                     student's code ran, leftovers that could not be removed); python -m grading grade exits 3, and a rerun of
                     python -m grading class grades it again
    needs attention  what grades.csv and the class report say of a student whose grading failed, and what
                     results.json says of a submission where no rule chooses what to grade (two different gan.py
                     files): a TA acts; no gradebook row until then
    out of date      results of another grader version or of an older submission: python -m grading class grades them again
"""
GRADED = "graded"
GRADING_FAILED = "grading failed"
NEEDS_ATTENTION = "needs attention"
OUT_OF_DATE = "out of date"
HELD_BACK = "not scored until"  # how a check that waits for another's (the root cause's) message begins
EXIT_GRADED, EXIT_UNREADABLE, EXIT_BAD_FLAGS, EXIT_GRADING_FAILED = 0, 1, 2, 3
