"""Calibrate the training diagnostics (codebase/diagnostics.py): the reference over three seeds per GAN, and the
catalogued mistakes (tests/grading/mutants.py), one epoch each with the default settings, then the warnings each
run raises and its FID against the reference's range.

    python bench/diagnostics.py --out /tmp/diag          # trains what is missing (about 25 epochs), then the table
    python bench/diagnostics.py --out /tmp/diag --table  # the table of the runs already there

Each run trains in a copy of the project whose codebase/gan.py is the reference or one mutant. Runs already in
--out are kept, so an interrupted calibration continues where it stopped.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codebase import diagnostics  # noqa: E402
from tests.grading import mutants  # noqa: E402

GANS = {"nonsaturating": ["run_gan.py"], "wasserstein_gp": ["run_gan.py", "--loss_type", "wasserstein_gp"],
        "conditional": ["run_conditional_gan.py"]}
# The mistakes that change training (not only how noise is drawn), with the GAN they are trained in.
TRAINED = {"penalty without create_graph": "wasserstein_gp", "lambda = 1": "wasserstein_gp",
           "Wasserstein terms swapped": "wasserstein_gp", "norm over the whole batch": "wasserstein_gp",
           "one-sided penalty, only gradient norms below 1": "wasserstein_gp",
           "alpha drawn once per batch": "wasserstein_gp", "penalty taken at the real images": "wasserstein_gp",
           "G loss of the critic with the wrong sign": "wasserstein_gp",
           "minimax G loss instead of the non-saturating one": "nonsaturating",
           "D loss summed over the batch": "nonsaturating", "fake detached in the G loss": "nonsaturating",
           "z uniform instead of Gaussian": "nonsaturating", "binary cross-entropy on probabilities": "nonsaturating",
           "real images scored with the wrong class": "conditional",
           "fakes projected on another class than they were drawn for": "conditional"}


def runs() -> list[tuple[str, str, int, mutants.Mutant | None]]:
    """(name, gan, seed, mutant or None) of every calibration run."""
    found = [(f"{gan}_s{seed}", gan, seed, None) for seed in (0, 1, 2) for gan in GANS]
    return found + [(f"{TRAINED[m.name]}_s0__{m.slug}", TRAINED[m.name], 0, m) for m in mutants.MUTANTS
                    if m.name in TRAINED]


def train(out: Path, name: str, gan: str, seed: int, mutant) -> None:
    run = out / name
    if (run / "done.json").exists():
        return
    work = out / "work" / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for item in ("run_gan.py", "run_conditional_gan.py", "codebase"):
        (shutil.copytree if (ROOT / item).is_dir() else shutil.copyfile)(ROOT / item, work / item)
    if mutant:
        (work / "codebase" / "gan.py").write_text(mutants.apply((ROOT / "codebase" / "gan.py").read_text(), mutant))
    start = time.monotonic()
    done = subprocess.run([sys.executable, *GANS[gan], "--seed", str(seed), "--out_dir", str(run), "--overwrite"],
                          cwd=work, capture_output=True, text=True)
    run.mkdir(parents=True, exist_ok=True)
    (run / "done.json").write_text(json.dumps({"rc": done.returncode, "seconds": round(time.monotonic() - start),
                                               "stderr": done.stderr[-2000:]}))
    shutil.rmtree(work, ignore_errors=True)
    print(f"{name}: exit {done.returncode}, {time.monotonic() - start:.0f} s", flush=True)


def judge(run: Path, gan: str) -> tuple[list[str], str, str]:
    """(warnings with their step, FID, verdict) of one finished run, by the rules of codebase/diagnostics.py."""
    monitor, warnings = diagnostics.Monitor(gan), []
    try:
        with open(run / "losses.csv") as f:
            for row in csv.DictReader(f):
                if warning := monitor.feed(float(row["d_loss"]), float(row["g_loss"])):
                    warnings.append(f"step {row['step']}: {warning.split(':')[0]}")
    except (OSError, ValueError):
        return ["no losses"], "", ""
    try:
        metrics = json.loads((run / "metrics.json").read_text())
    except OSError:
        done = json.loads((run / "done.json").read_text())
        return warnings, "-", "stopped: " + (done["stderr"].strip().splitlines() or ["?"])[-1][:80]
    fid = f"{metrics['fid']:.1f}" + (f", acc {100 * metrics['class_accuracy']:.1f}%" if "class_accuracy" in metrics
                                     else "")
    return warnings, fid, "far from the reference" if diagnostics.verdict(gan, metrics, True) else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the calibration runs")
    parser.add_argument("--table", action="store_true", help="only print the table of the runs already there")
    args = parser.parse_args()
    if not args.table:
        for name, gan, seed, mutant in runs():
            train(args.out, name, gan, seed, mutant)
    print("| run | warnings while training | FID after one epoch | at the end |\n|---|---|---|---|")
    for name, gan, seed, mutant in runs():
        if (args.out / name / "done.json").exists():
            warnings, fid, verdict = judge(args.out / name, gan)
            label = f"{gan}, {mutant.name}" if mutant else f"{gan}, correct, seed {seed}"
            print(f"| {label} | {'; '.join(warnings) or 'none'} | {fid} | {verdict or 'none'} |")


if __name__ == "__main__":
    main()
