"""The class report's cost and its look in a real browser: a made-up class of N submissions graded by `python -m
grading class`, then the report rebuilt alone (seconds, peak memory, size), opened in headless Chromium (images
loaded, gallery sorted, nothing fetched), and a screenshot for the docs.

    python bench/diagnostics.py --out /tmp/diag                      # the runs whose generators draw the grids
    python bench/class_report.py --runs /tmp/diag --out /tmp/class -n 150
    python bench/class_report.py --runs /tmp/diag --out /tmp/class --screenshot docs/img/class_report.png

The class: each student's gan.py is the reference, one of the variants written differently (tests/grading) or a
catalogued mistake; each grid is drawn, with the student's own noise, by the generator of a reference run of that
GAN. A few students copied real.png, pasted real images, copied another student's grid or gan.py, or left files out.
A class already graded in --out is reused (`python -m grading class` grades only what changed).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from codebase.metrics import load_generator, sample  # noqa: E402
from codebase.train import save_grid_image  # noqa: E402
from grading.submission import RUNS  # noqa: E402
from tests.grading import mutants  # noqa: E402

GANS = {"1.2": "nonsaturating", "3.2": "conditional", "4.5": "wasserstein_gp"}


def grid(run: Path, seed: int) -> bytes:
    g, _ = load_generator(run)
    with tempfile.TemporaryDirectory() as tmp:
        save_grid_image(sample(g, 100, seed=seed)[0], Path(tmp) / "grid.png")
        return (Path(tmp) / "grid.png").read_bytes()


def make_class(runs: Path, folder: Path, n: int) -> dict[str, str]:
    """Write N submissions into ``folder``; returns what each student did that a human should see."""
    rng = random.Random(0)
    reference = (ROOT / "codebase" / "gan.py").read_text()
    codes = [reference] + [p.read_text() for p in sorted((ROOT / "tests" / "grading").glob("variant_*.py"))]
    codes += [mutants.apply(reference, m) for m in mutants.MUTANTS]
    references = {p: sorted(runs.glob(f"{gan}_s[0-9]")) for p, gan in GANS.items()}
    real = (references["1.2"][0] / "real.png").read_bytes()
    folder.mkdir(parents=True)
    story, made = {}, {}
    for i in range(n):
        student = f"s{i:03d}"
        files = {"codebase/gan.py": rng.choice(codes).encode()}
        files.update({f"{RUNS[p]}/fake_0937.png": grid(rng.choice(references[p]), 1000 + i) for p in RUNS})
        if i % 50 == 7:
            files["out_nonsaturating/fake_0937.png"], story[student] = real, "real.png as its 1.2 grid"
        elif i % 50 == 17 and made:
            other = sorted(made)[-1]
            files["out_wasserstein_gp/fake_0937.png"] = made[other]["out_wasserstein_gp/fake_0937.png"]
            story[student] = f"4.5 grid of {other}"
        elif i % 50 == 27 and made:
            other = sorted(made)[-2]
            files["codebase/gan.py"] = re.sub(r"#[^\n]*", "", made[other]["codebase/gan.py"].decode()).encode()
            story[student] = f"gan.py of {other}, comments removed"
        elif i % 50 == 37:
            del files["out_wasserstein_gp/fake_0937.png"]
            story[student] = "no 4.5 grid"
        elif i % 50 == 47:
            del files["codebase/gan.py"]
            story[student] = "no gan.py"
        made[student] = files
        with zipfile.ZipFile(folder / f"{student}.zip", "w") as zf:
            for name, content in files.items():
                zf.writestr(name, content)
    return story


def browser(report: Path, screenshot: Path | None) -> dict:
    """What headless Chromium sees: the images loaded, the gallery's order after #sort=worst, and any request."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        return {"browser": "no chromium (apt-get install chromium)"}
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000",
             "--host-resolver-rules=MAP * ~NOTFOUND"]
    dom = subprocess.run([*flags, "--dump-dom", f"{report.resolve().as_uri()}#sort=worst"], capture_output=True,
                         text=True, timeout=300).stdout
    body = re.search(r"<body([^>]*)>", dom)
    order = re.findall(r'class="card" data-student="([^"]+)"', dom)
    if screenshot:
        subprocess.run([*flags, "--window-size=1100,1300", f"--screenshot={screenshot.resolve()}",
                        f"{report.resolve().as_uri()}#sort=worst&view=gallery"], capture_output=True, timeout=300)
    return {"body": body[1].strip() if body else None, "first after sort=worst": order[:5]}


def measured(code: str) -> tuple[float, float]:
    """Seconds (the process's, or what ``code`` prints after SECONDS) and peak memory (MiB) of a fresh Python
    process running ``code`` in the project."""
    wrapper = (f"{code}\nprint('PEAK', next(line.split()[1] for line in open('/proc/self/status') "
               "if line.startswith('VmHWM')))")  # not ru_maxrss: it keeps the peak of the process forked from
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper], cwd=ROOT, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    if timed := re.search(r"SECONDS ([\d.]+)", done.stdout):
        seconds = float(timed[1])
    return seconds, int(re.search(r"PEAK (\d+)", done.stdout)[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="bench/diagnostics.py's --out folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the class and its grading")
    parser.add_argument("-n", type=int, default=150, help="students (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the gallery, worst grids first")
    args = parser.parse_args()
    torch.set_num_threads(1)
    submissions, graded = args.out / "submissions", args.out / "graded"
    if not submissions.exists():
        story = make_class(args.runs, submissions, args.n)
        (args.out / "story.json").write_text(json.dumps(story, indent=1))
        submissions.chmod(0o700)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "grading", "class", str(submissions), "-o", str(graded), "--jobs",
                    str(args.jobs), "--timeout", "60"], check=False, cwd=ROOT)
    print(f"python -m grading class: {time.perf_counter() - start:.0f} s for what was not graded yet")
    seconds, peak = measured(f"import sys; sys.argv = ['grading', 'report', {str(graded)!r}]; "
                             "import runpy; runpy.run_module('grading', run_name='__main__')")
    size = (graded / "report.html").stat().st_size
    print(f"report rebuilt alone: {seconds:.1f} s, peak memory {peak:.0f} MiB, {size / 2**20:.1f} MiB of HTML")
    grids = [str(p) for p in sorted(submissions.parent.glob("graded/work/*/[1-4].[25].png"))[:3]]
    _, before = measured("import torch; from grading import checks")  # what a grading holds anyway
    seconds, peak = measured("import time; import torch; from pathlib import Path; from grading import checks; "
                             "start = time.perf_counter(); from grading import grids; "
                             f"[grids.judge(Path(p).read_bytes(), False) for p in {grids!r}]; "
                             "print('SECONDS', time.perf_counter() - start)")
    print(f"judging one submission's 3 grids, as a grading does after its children: {seconds:.1f} s, peak memory "
          f"{peak:.0f} MiB against {before:.0f} MiB for what it holds anyway (torch, the checks)")
    print(json.dumps(browser(graded / "report.html", args.screenshot), indent=1))
    print("what the class did:", json.dumps(json.loads((args.out / "story.json").read_text()), indent=1))


if __name__ == "__main__":
    main()
