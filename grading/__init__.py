"""The grader's library: what graders deploy (grade.py is its command line; tests/ tests it).

submission.py reads a ZIP or folder of loose files; sandbox.py runs untrusted code in children; harness.py,
probes.py and wire.py are all a child sees of the grader; checks.py holds the expected values and points;
scoring.py ties them into Gradescope's results.json.
"""
