"""The class at a glance: OUT/report.html from OUT/results and OUT/work, with flags for a human and the gradebook.

    python -m grading report graded/    # rebuilds what python -m grading class builds at its end

One self-contained page (images inlined, a Content-Security-Policy that forbids every fetch, every student string
escaped) that any browser opens offline: per check its pass rate, mean and median points and most common failure
messages; a histogram of totals; the students who need a human (gradings that failed, missing files, flags); and
a gallery of every student's three final grids with their automatic scores, sortable. Flags (grading/similarity.py,
and samples that are real images, from the results) also go to grades.csv's "flags" column; with an LMS preset,
the gradebook file for that LMS is written beside it (grading/gradebook.py).
"""
from __future__ import annotations

import argparse

import base64
import hashlib
import html
import io
import json
import os
import re
import statistics
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from grading import gradebook, similarity
from grading.batch import Entry, current, status, write_csv
from grading.status import GRADED, NEEDS_ATTENTION, OUT_OF_DATE
from grading.submission import RUNS

CLASS_FILE = "class.json"  # the students (ids, names, late) and the LMS preset, written by python -m grading class


def save_class(out: Path, students: list[Entry], lms: str | None, column: str, known: Path | None = None) -> None:
    data = {"lms": lms, "column": column, "known": str(known.resolve()) if known else None,
            "students": [{**asdict(e), "path": str(e.path)} for e in students]}
    tmp = out / f"{CLASS_FILE}.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, out / CLASS_FILE)


def load_class(out: Path) -> tuple[list[Entry], str | None, str, str | None]:
    data = json.loads((out / CLASS_FILE).read_text())
    students = [Entry(**{**s, "path": Path(s["path"]), "order": tuple(s["order"]), "others": tuple(s["others"]),
                         "parts": tuple(tuple(p) for p in s.get("parts", ())), "ignored": tuple(s.get("ignored", ()))})
                for s in data["students"]]
    return students, data.get("lms"), data.get("column") or gradebook.DEFAULT_COLUMN, data.get("known")


def _results(out: Path, students: list[Entry]) -> dict[str, dict]:
    """Each student's results; those of another grader version or of an older submission get status OUT_OF_DATE, so
    that neither the report nor the gradebook takes them for current grades."""
    found = {}
    for entry in students:
        try:
            content = json.loads((out / "results" / f"{entry.file_name}.json").read_text())
            extra = content["extra_data"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if status(content) == GRADED and not current(entry, content):
            extra["status"] = OUT_OF_DATE
        found[entry.student] = content
    return found


REFERENCE = Path(__file__).resolve().parents[1] / "codebase" / "gan.py"  # the reference solution
MAX_KNOWN = 1000  # files of --known read, each up to 512 KiB


def known_solutions(folder: str | Path | None) -> list[str]:
    """The .py files under ``folder`` (known public solutions, last year's class): what similarity discounts."""
    if not folder:
        return []
    found = []
    for path in sorted(Path(folder).rglob("*.py"))[:MAX_KNOWN]:
        try:
            if path.is_file() and path.stat().st_size <= 512 << 10:
                found.append(path.read_text(errors="replace"))
        except OSError:
            pass
    return found


def flags(out: Path, students: list[Entry], results: dict[str, dict], known: str | None = None
          ) -> dict[str, list[str]]:
    """Per student, what a human should look at: samples that are real images, gan.py files and grids like
    another student's (naming them), beyond what the starter, the reference and the ``known`` solutions share."""
    from grading.handout import starter_files

    found: dict[str, list[str]] = {e.student: [] for e in students}
    for student, content in results.items():
        if status(content) == GRADED:
            found[student] += [str(f)[:300] for f in content.get("extra_data", {}).get("flags", [])[:3]]
    work = {e.student: out / "work" / e.file_name for e in students if e.student in results}
    sources = {s: (w / "gan.py").read_text(errors="replace") for s, w in work.items() if (w / "gan.py").is_file()}
    starter = starter_files(names=["codebase/gan.py"])["codebase/gan.py"][0].decode()
    code = similarity.similar_code(sources, starter, [REFERENCE.read_text(), *known_solutions(known)])
    _pairs(found, "gan.py like", [(a, b, f"{value:.0%} of the code not common to the class; {a}'s lines {first}-"
                                  f"{last} alike") for a, b, value, (first, last) in code])
    for problem in RUNS:
        grids = {}
        for s, w in work.items():
            try:
                with Image.open(w / f"{problem}.png") as image:
                    grids[s] = np.asarray(image.convert("L").resize((302, 302)))
            except OSError:
                pass
        grids = {s: g for s, g in grids.items() if not similarity.collapsed(g)}  # blank grids match by chance
        _pairs(found, f"{problem} grid like", [(a, b, f"RMS difference {value:.3f}")
                                                for a, b, value in similarity.similar_grids(grids)])
    return found


def _pairs(found: dict[str, list[str]], what: str, pairs: list[tuple[str, str, str]], named: int = 5) -> None:
    """One flag per student for ``pairs`` (a, b, how alike; most alike first): the first ``named`` others, then how
    many more."""
    others: dict[str, list[tuple[str, str]]] = {}
    for a, b, measure in pairs:
        others.setdefault(a, []).append((b, measure))
        others.setdefault(b, []).append((a, measure))
    for student, alike in others.items():
        text = ", ".join(f"{other}'s ({measure})" for other, measure in alike[:named])
        more = f" and {len(alike) - named} more" if len(alike) > named else ""
        found[student].append(f"{what} {text}{more}")


def build(out: Path) -> dict:
    """Rewrite OUT/report.html, OUT/grades.csv (with flags) and the LMS gradebook; returns a short summary."""
    students, lms, column, known = load_class(out)
    results = _results(out, students)
    found = flags(out, students, results, known)
    write_csv(out, students, found)
    book = gradebook.write(out, lms, column, students, results) if lms else None
    page = render(out, students, results, found)
    tmp = out / "report.html.tmp"
    tmp.write_text(page)
    os.replace(tmp, out / "report.html")
    return {"report": out / "report.html", "gradebook": book, "flagged": sum(bool(f) for f in found.values()),
            "bytes": len(page)}


# ---- The page --------------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
       "script-src 'sha256-{}'")  # the page's own script only, by its hash


def e(value) -> str:
    return html.escape(str(value), quote=True)


def check_table(results: dict[str, dict]) -> str:
    """Per check (with points): pass rate, mean and median points, the most common failures (numbers blanked)."""
    by_check: dict[str, list[dict]] = {}
    for content in results.values():
        if status(content) == GRADED:
            for test in content.get("tests", []):
                if test.get("max_score"):
                    by_check.setdefault(test["number"], []).append(test)
    rows = []
    for number in sorted(by_check, key=lambda n: [int(p) for p in n.split(".")]):
        tests = by_check[number]
        points = [t["score"] for t in tests]
        failures = Counter(_NUMBER.sub("#", (t["output"].splitlines() or [""])[0])[:160]
                           for t in tests if t.get("status") == "failed")
        common = "".join(f"<li>{count} &times; {e(message)}</li>" for message, count in failures.most_common(3))
        passed = sum(t.get("status") == "passed" for t in tests) / len(tests)
        rows.append(f"<tr><td>{e(tests[0]['name'])}</td><td>{tests[0]['max_score']:g}</td>"
                    f"<td>{passed:.0%}</td><td>{statistics.mean(points):.2f}</td>"
                    f"<td>{statistics.median(points):g}</td><td><ul>{common}</ul></td></tr>")
    return ("<table><tr><th>check</th><th>points</th><th>passed</th><th>mean</th><th>median</th>"
            "<th>most common failures (numbers as #)</th></tr>" + "".join(rows) + "</table>")


def problem_table(results: dict[str, dict]) -> str:
    """Per problem: mean points, full marks, and how its grids fared (healthy, median scores)."""
    graded = [c for c in results.values() if status(c) == GRADED]
    rows = []
    for problem in RUNS:
        tests = [[t for t in c.get("tests", []) if t["number"].rsplit(".", 1)[0] == problem] for c in graded]
        points = [sum(t["score"] for t in ts) for ts in tests]
        top = max((sum(t["max_score"] for t in ts) for ts in tests), default=0)
        scores = [c.get("extra_data", {}).get("grids", {}).get(problem) for c in graded]
        scores = [s for s in scores if s]
        median = {k: statistics.median(s[k] for s in scores) if scores and k in scores[0] else None
                  for k in ("realism", "classes", "accuracy")}
        cells = [f"{statistics.mean(points):.2f} / {top:g}" if points else "",
                 f"{sum(p == top for p in points)} of {len(points)}",
                 f"{sum(s['healthy'] for s in scores)} of {len(scores)}",
                 *("" if v is None else f"{v:.2f}" for v in median.values())]
        rows.append(f"<tr><td>{e(problem)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<table><tr><th>problem</th><th>mean points</th><th>full marks</th><th>grids judged healthy</th>"
            "<th>median realism</th><th>median classes</th><th>median column accuracy</th></tr>"
            + "".join(rows) + "</table>")


def histogram(totals: list[float], top: float) -> str:
    """A PNG histogram of the totals, as a data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.4))
    ax.hist(totals, bins=np.linspace(0, max(top, 1), 15), color="#4c72b0")
    ax.set_xlabel("total points")
    ax.set_ylabel("students")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _grid_score(scores: dict | None) -> float:
    """One number per grid to sort by (lower is worse): realism, or column accuracy when lower; 2 if none."""
    if not scores:
        return 2.0  # no grid: after every judged one, so that "worst first" opens on broken grids
    return min(scores.get("realism", 0), scores.get("accuracy", 1))


def card(entry: Entry, content: dict | None, work: Path, flagged: list[str]) -> str:
    extra = (content or {}).get("extra_data", {})
    graded = content is not None and status(content) == GRADED
    total = content.get("score", 0) if graded else -1
    cells, keys = [], {}
    for problem in RUNS:
        scores = extra.get("grids", {}).get(problem) if graded else None
        keys[f"g{problem.replace('.', '')}"] = _grid_score(scores)
        path = work / f"{problem}.png"
        if path.is_file():
            uri = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
            image = f'<img src="{uri}" alt="{e(problem)} grid of {e(entry.student)}" width="302" height="302">'
        else:
            image = '<div class="none">no grid</div>'
        if scores:
            said = f"real {scores['realism']:.0%} &middot; classes {scores['classes']:.1f}"
            said += f" &middot; columns {scores['accuracy']:.0%}" if "accuracy" in scores else ""
            said = f'<span class="{"ok" if scores["healthy"] else "bad"}">{said}</span>'
        else:
            said = e(str(extra.get("not_judged", {}).get(problem, "not judged"))[:200])
        cells.append(f"<figure>{image}<figcaption>{e(problem)}: {said}</figcaption></figure>")
    keys["worst"] = min(keys.values())
    data = "".join(f' data-{k}="{v:.3f}"' for k, v in keys.items())
    note = "".join(f"<li>{e(f)}</li>" for f in flagged)
    head = f"{total:g} points" if graded else NEEDS_ATTENTION
    return (f'<div class="card" data-student="{e(entry.student)}" data-name="{e(entry.name)}" '
            f'data-total="{total:g}"{data}>'
            f"<h3>{e(entry.student)} <small>{e(entry.name if entry.name != entry.student else '')}</small> "
            f"&mdash; {head}</h3><div class=\"grids\">{''.join(cells)}</div>"
            f"{'<ul class=flags>' + note + '</ul>' if note else ''}</div>")


# What a TA does first: a grading to redo, a choice only a human can make, an upload to ask for again, then what to
# look at (time limits, flags, grids), then what to know (late work, files left out).
TODO = ("grade again", "choose", "ask for a new upload", "look at the code", "look at the flag", "look at the grids",
        "late", "left out")


def todo(entry: Entry, content: dict | None, flags: list[str]) -> list[tuple[int, str]]:
    """(rank in TODO, reason) of everything about a student that a human must act on or know."""
    extra = (content or {}).get("extra_data", {})
    found: list[tuple[int, str]] = []
    if content is None:
        found.append((0, "not graded yet: run python -m grading class again"))
    elif extra.get("status") == OUT_OF_DATE:
        found.append((0, "graded by another grader version, or before the submission changed: run python -m grading class "
                         "again"))
    elif extra.get("ambiguous"):
        found.append((1, f"{extra['ambiguous'][:300]}: choose the one to grade, and grade that alone"))
    elif extra.get("unreadable"):
        said = extra["unreadable"][:300]
        found.append((2, said if "ask for" in said else f"{said}: ask for a new upload"))
    elif status(content) != GRADED:
        found.append((0, "the grading failed: " + (content.get("output", "").splitlines() or [""])[-1][:200]))
    else:
        found += [(2, str(m)[:300]) for m in extra.get("missing", [])[:4]]
        stopped = sorted({t["number"].rsplit(".", 1)[0] for t in content.get("tests", [])
                          if "stopped at the time limit" in t.get("output", "")})
        if stopped:
            found.append((3, f"{', '.join(stopped)}: stopped at the time limit (an endless loop, or very slow code?)"))
        found += [(5, f"{p} grid below a healthy one-epoch grid") for p, s in sorted(extra.get("grids", {}).items())
                  if isinstance(s, dict) and not s.get("healthy", True)]
        found += [(7, line[:300]) for line in content.get("output", "").splitlines()[1:] if line.startswith("not graded")]
    found += [(4, str(f)[:300]) for f in flags]
    if entry.late:
        found.append((6, "submitted late"))
    if entry.others:
        found.append((7, f"other attempts, not graded: {', '.join(entry.others[:4])}"))
    if entry.ignored and not extra.get("unreadable"):
        found.append((7, f"handed in beside the code, not graded: {', '.join(entry.ignored[:4])}"))
    return sorted(found)


def attention(students: list[Entry], results: dict[str, dict], found: dict[str, list[str]]) -> str:
    """The TA's to-do list: every student with something to act on or know, most urgent first."""
    rows = []
    for entry in students:
        items = todo(entry, results.get(entry.student), found.get(entry.student, []))
        if items:
            name = entry.name if entry.name != entry.student else ""
            rows.append((items[0][0], entry.student, f"<tr><td>{e(TODO[items[0][0]])}</td><td>{e(entry.student)}</td>"
                         f"<td>{e(name)}</td><td>{'<br>'.join(e(r) for _, r in items)}</td></tr>"))
    if not rows:
        return "<p>Nobody.</p>"
    return ("<table><tr><th>to do</th><th>student</th><th>name</th><th>why</th></tr>"
            + "".join(row for *_, row in sorted(rows)) + "</table>")


def render(out: Path, students: list[Entry], results: dict[str, dict], found: dict[str, list[str]]) -> str:
    graded = {s: c for s, c in results.items() if status(c) == GRADED}
    totals = [c.get("score", 0) for c in graded.values()]
    top = max((sum(t["max_score"] for t in c.get("tests", [])) for c in graded.values()), default=0)
    summary = (f"{len(students)} students, {len(graded)} graded, {len(students) - len(graded)} not graded or "
               f"needing attention.")
    if totals:
        summary += f" Totals out of {top:g}: mean {statistics.mean(totals):.1f}, median {statistics.median(totals):g}."
    cards = "".join(card(s, results.get(s.student), out / "work" / s.file_name, found.get(s.student, []))
                    for s in students)
    plot = f'<img src="{histogram(totals, top)}" alt="histogram of totals">' if totals else ""
    unjudged = {r for c in graded.values() for r in c.get("extra_data", {}).get("not_judged", {}).values()
                if "on this grading machine" in str(r)}
    banner = (f'<p class="bad">The grids were not judged: {e(sorted(unjudged)[0])}. Install it and grade again '
              "(python -m grading class ... --regrade).</p>" if unjudged else "")
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    return PAGE.format(csp=CSP.format(digest), summary=e(summary), banner=banner, plot=plot, script=SCRIPT,
                       attention=attention(students, results, found), problems=problem_table(results),
                       checks=check_table(results), cards=cards)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>GAN homework: class report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; vertical-align: top; text-align: left; }}
td ul {{ margin: 0; padding-left: 1.2em; }}
.card {{ border: 1px solid #ccc; border-radius: 6px; padding: 6px 10px; margin: 8px 0; }}
.card h3 {{ margin: 0 0 4px; font-size: 15px; }}
.grids {{ display: flex; gap: 10px; flex-wrap: wrap; }}
figure {{ margin: 0; width: 310px; }}
figure img {{ cursor: zoom-in; image-rendering: pixelated; display: block; }}
figcaption {{ font-size: 12px; }}
.none {{ width: 302px; height: 302px; background: #eee; display: flex; align-items: center; justify-content: center; }}
.ok {{ color: #176d2c; }} .bad {{ color: #b00020; font-weight: bold; }}
.flags {{ color: #8a4b00; margin: 4px 0; }}
#big {{ position: fixed; inset: 0; background: rgba(0,0,0,.8); display: flex; align-items: center;
        justify-content: center; cursor: zoom-out; }}
#big[hidden] {{ display: none; }}
body.gallery-only > :not(#gallery-top, #gallery-help, #gallery, #big, script) {{ display: none; }}
#big img {{ width: 906px; max-width: 95vw; max-height: 95vh; image-rendering: pixelated; }}
</style></head>
<body>
<h1>GAN homework: class report</h1>
<nav><a href="#attention">Needs a human</a> &middot; <a href="#problems">Problems</a> &middot;
<a href="#checks">Checks</a> &middot; <a href="#gallery-top">Gallery</a></nav>
<p>{summary}</p>
{banner}
{plot}
<h2 id="attention">Needs a human</h2>
<p>Gradings that failed, missing files, and flags: samples that are real images, gan.py or grids like another
student's. A flag is a reason to look, never a deduction by itself.</p>
{attention}
<h2 id="problems">Problems</h2>
{problems}
<h2 id="checks">Checks</h2>
{checks}
<h2 id="gallery-top">Gallery</h2>
<p id="gallery-help">Each student's final grids, with the classifier's scores: the share of samples that look like real clothing,
the classes they spread over, and for 3.2 the share showing their column's class (red: below a healthy one-epoch
grid). Click a grid to enlarge it.
<label>Sort by <select id="sort">
<option value="student">student</option>
<option value="name">name</option>
<option value="worst">worst grid first</option>
<option value="total">total, lowest first</option>
<option value="total:desc">total, highest first</option>
<option value="g12">1.2 grid, worst first</option>
<option value="g32">3.2 grid, worst first</option>
<option value="g45">4.5 grid, worst first</option>
</select></label></p>
<div id="gallery">{cards}</div>
<div id="big" hidden><img alt="enlarged grid"></div>
<script>{script}</script>
</body></html>
"""

SCRIPT = """
const gallery = document.getElementById("gallery"), big = document.getElementById("big");
const select = document.getElementById("sort");
function sortBy(value) {
  const [key, order] = value.split(":");
  const cards = [...gallery.children];
  cards.sort((a, b) => {
    const x = a.dataset[key], y = b.dataset[key];
    const c = key === "student" || key === "name" ? x.localeCompare(y) : parseFloat(x) - parseFloat(y);
    return (order === "desc" ? -c : c) || a.dataset.student.localeCompare(b.dataset.student);
  });
  cards.forEach(card => gallery.appendChild(card));
  select.value = value;
  document.body.dataset.sorted = value;
}
select.onchange = () => sortBy(select.value);
gallery.onclick = event => {
  if (event.target.tagName === "IMG") { big.querySelector("img").src = event.target.src; big.hidden = false; }
};
big.onclick = () => { big.hidden = true; };
addEventListener("keydown", event => { if (event.key === "Escape") big.hidden = true; });
const params = new URLSearchParams(location.hash.slice(1));  // report.html#sort=worst&view=gallery
const wanted = params.get("sort");
if (params.get("view") === "gallery") document.body.classList.add("gallery-only");
if (wanted && [...select.options].some(o => o.value === wanted)) {
  sortBy(wanted);
  if (!document.body.classList.contains("gallery-only")) document.getElementById("gallery-top").scrollIntoView();
}
addEventListener("load", () => {
  const images = [...document.images].filter(i => i.closest("#big") === null);
  const loaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.images = loaded + "/" + images.length;
});
"""


# ---- The command line ------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the -o folder of a `python -m grading class` run")
    args = parser.parse_args(argv)
    if not (args.folder / CLASS_FILE).is_file():
        parser.error(f"{args.folder}: no {CLASS_FILE} in it: give the -o folder of a `python -m grading class` run")
    try:
        built = build(args.folder)
    except OSError as error:
        parser.error(f"{args.folder}: cannot write the report there ({error.strerror})")
    book = f" and {built['gradebook']}" if built["gradebook"] else ""
    print(f"{built['report']}{book} written ({built['bytes'] >> 10} KiB); {built['flagged']} student(s) flagged")
