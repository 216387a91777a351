"""The grader: what graders deploy (``python -m grading --help``: its command line; tests/ tests it).

submission.py reads a ZIP or folder of loose files; sandbox/ runs untrusted code in children (the modes, their
probes, the uids, the jail, the cleanup); child/ holds all a child sees of the grader (harness, confinement,
probes, wire format); checks.py holds the expected values and points; scoring.py ties them into Gradescope's
results.json; status.py names the statuses.
"""
