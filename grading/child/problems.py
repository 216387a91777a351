"""The handout's graded problems as the grader and its child both name them: each problem's function in gan.py and
its checks (key, name, points); grading/checks.py holds what each check does.

Only the standard library: results of a grading that has no probe outputs to check (no gan.py, an unreadable upload,
a grading that failed) are written without importing torch. The child loads this file by path (harness.py).
"""
FUNCTIONS = {"1.2": "loss_nonsaturating", "3.2": "conditional_loss_nonsaturating", "4.5": "loss_wasserstein_gp"}

_NONSATURATING = {"sampling": 1, "d_value": 2, "g_value": 2, "d_grads": 2, "g_grads": 2, "extreme": 1}
_POINTS = {"1.2": _NONSATURATING, "3.2": _NONSATURATING,
           "4.5": {"sampling": 1, "alpha": 3, "d_value": 3, "g_value": 2, "d_grads": 3, "g_grads": 3}}


def _name(problem: str, key: str) -> str:
    return {"sampling": "z ~ N(0, I)" + (", fake labels y_real or uniform" if problem == "3.2" else ""),
            "alpha": "interpolates with one alpha ~ U[0, 1] per sample", "d_value": "d_loss value",
            "g_value": "g_loss value", "d_grads": "d_loss gradient to D", "g_grads": "g_loss gradient to G",
            "extreme": "stable at extreme logits"}[key]


CHECKS: dict[str, tuple[tuple[str, str, float], ...]] = {  # problem -> its checks' (key, name, points), in order
    problem: tuple((key, _name(problem, key), float(points)) for key, points in table.items())
    for problem, table in _POINTS.items()}
