#!/usr/bin/env bash
# Build hw3.zip for Gradescope: codebase/gan.py plus the final sample grid of each run that exists.
#
#   bash make_submission.sh          # writes hw3.zip in this folder
#
# A run that is missing is named with the command that makes it, and the ZIP is built without it, so partial
# work can be handed in. A grid from a run that has not reached its last step is packed all the same, and named
# with the command that finishes the run. Only a missing codebase/gan.py stops the script.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
case "${1:-}" in
  -h|--help) sed -n '2,8s/^# \{0,1\}//p' "$0"; exit 0 ;;
  "") ;;
  *) echo "make_submission: unknown argument '$1' (it takes none; see --help)" >&2; exit 2 ;;
esac

exec "$PYTHON" - <<'PY'
import json, os, re, sys, zipfile

RUNS = {"out_nonsaturating": "python run_gan.py",
        "out_wasserstein_gp": "python run_gan.py --loss_type wasserstein_gp",
        "out_nonsaturating_conditional": "python run_conditional_gan.py"}
if not os.path.isfile("codebase/gan.py"):
    sys.exit("make_submission: codebase/gan.py is missing; run this script from the folder that holds codebase/")
files = ["codebase/gan.py"]
for run, command in RUNS.items():
    steps = {int(m[1]): name for name in (os.listdir(run) if os.path.isdir(run) else [])
             if (m := re.fullmatch(r"fake_(\d+)\.png", name))}
    if steps:
        files.append(f"{run}/{steps[max(steps)]}")  # the highest step, compared as a number
        try:  # the step the run ends at, which training writes into config.json
            total = int(json.load(open(f"{run}/config.json"))["total_steps"])
        except (OSError, ValueError, KeyError, TypeError):
            total = None
        if total is not None and max(steps) < total:
            print(f"make_submission: {files[-1]} is from an unfinished run (step {max(steps)} of {total}); packed "
                  f"all the same. Finish the run with: {command} --resume (or, if you changed codebase/gan.py "
                  f"since, train it again with: {command} --overwrite)", file=sys.stderr)
    else:
        print(f"make_submission: no sample grid in {run}/ (left out). Create it with: {command}", file=sys.stderr)
with zipfile.ZipFile("hw3.zip.tmp", "w", zipfile.ZIP_DEFLATED) as z:
    for path in files:
        z.write(path, arcname=path)  # keep the folder, e.g. out_wasserstein_gp/fake_0937.png
os.replace("hw3.zip.tmp", "hw3.zip")
print("wrote hw3.zip:\n" + "\n".join(f"  {path}" for path in files))
PY
