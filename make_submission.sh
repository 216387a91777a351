#!/usr/bin/env bash
# Build hw3.zip for Gradescope: codebase/gan.py plus the final sample grid of each run that exists.
#
#   bash make_submission.sh          # writes hw3.zip in this folder
#
# A run that is missing is named with the command that makes it, and the ZIP is built without it, so partial
# work can be handed in. It warns, and packs all the same, when a function of gan.py is still a stub, when a grid
# comes from an unfinished run or from another gan.py than the one packed, and when runs lie in another folder.
# Only a missing codebase/gan.py stops the script.
set -euo pipefail
export MAKE_SUBMISSION_FROM="$PWD"
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
case "${1:-}" in
  -h|--help) sed -n '2,9s/^# \{0,1\}//p' "$(basename "$0")"; exit 0 ;;
  "") ;;
  *) echo "make_submission: unknown argument '$1' (it takes none; see --help)" >&2; exit 2 ;;
esac

exec "$PYTHON" - <<'PY'
import ast, hashlib, json, os, re, sys, zipfile

RUNS = {"out_nonsaturating": "python run_gan.py",
        "out_wasserstein_gp": "python run_gan.py --loss_type wasserstein_gp",
        "out_nonsaturating_conditional": "python run_conditional_gan.py"}
FUNCTIONS = {"loss_nonsaturating": "1.2", "conditional_loss_nonsaturating": "3.2", "loss_wasserstein_gp": "4.5"}


def warn(text):
    print(f"make_submission: {text}", file=sys.stderr)


def grids(folder):
    """{step: file name} of the sample grids in folder."""
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return {int(m[1]): name for name in names if (m := re.fullmatch(r"fake_(\d+)\.png", name))}


if not os.path.isfile("codebase/gan.py"):
    sys.exit("make_submission: codebase/gan.py is missing; run this script from the folder that holds codebase/")
source = open("codebase/gan.py", "rb").read()
digest = hashlib.sha256(source).hexdigest()
try:
    tree = ast.parse(source)
except SyntaxError as error:
    warn(f"codebase/gan.py does not parse (line {error.lineno}: {error.msg}): the grader cannot import it, so every "
         "problem gets 0 points. Check it with: python -m pytest -q tests/test_losses.py")
    tree = None
for node in ast.walk(tree) if tree else ():
    if isinstance(node, ast.FunctionDef) and node.name in FUNCTIONS and any(
            isinstance(n, ast.Raise) and "NotImplementedError" in ast.unparse(n) for n in ast.walk(node)):
        warn(f"codebase/gan.py: {node.name} still raises NotImplementedError: the grader gives handout "
             f"{FUNCTIONS[node.name]} 0 points until you write it")
elsewhere = [os.environ.get("MAKE_SUBMISSION_FROM", "."), "codebase", "tests", ".."]  # where runs may have landed
files = ["codebase/gan.py"]
for run, command in RUNS.items():
    steps = grids(run)
    if steps:
        files.append(f"{run}/{steps[max(steps)]}")  # the highest step, compared as a number
        try:  # the step the run ends at, and the gan.py it trained with, which training writes into config.json
            config = json.load(open(f"{run}/config.json"))
        except (OSError, ValueError):
            config = {}
        total = config.get("total_steps") if isinstance(config, dict) else None
        if isinstance(total, int) and max(steps) < total:
            warn(f"{files[-1]} is from an unfinished run (step {max(steps)} of {total}); packed all the same. Finish "
                 f"the run with: {command} --resume (or, if you changed codebase/gan.py since, train it again with: "
                 f"{command} --overwrite)")
        trained = config.get("gan_sha256") if isinstance(config, dict) else None
        if isinstance(trained, str) and trained != digest:
            warn(f"{files[-1]} was trained by another version of codebase/gan.py than the one packed; packed all the "
                 "same. The grader scores the code you pack and shows this grid beside it: to make them match, train "
                 f"again with: {command} --overwrite")
    else:
        found = [os.path.relpath(os.path.join(d, run)) for d in elsewhere
                 if os.path.realpath(d) != os.path.realpath(".") and grids(os.path.join(d, run))]
        if found:
            warn(f"no sample grid in {run}/, but there is one in {found[0]}/ (the run scripts write into the folder "
                 f"they are run from); left out. Move that folder here ({os.getcwd()}), or train from here with: "
                 f"{command}")
        else:
            warn(f"no sample grid in {run}/ (left out). Create it with: {command}")
with zipfile.ZipFile("hw3.zip.tmp", "w", zipfile.ZIP_DEFLATED) as z:
    for path in files:
        z.write(path, arcname=path)  # keep the folder, e.g. out_wasserstein_gp/fake_0937.png
os.replace("hw3.zip.tmp", "hw3.zip")
where = os.path.relpath("hw3.zip", os.environ.get("MAKE_SUBMISSION_FROM", "."))
print(f"wrote {where}:\n" + "\n".join(f"  {path}" for path in files))
PY
