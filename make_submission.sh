#!/usr/bin/env bash
# Build hw3.zip: codebase/gan.py plus the final sample grid of each of the three runs.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

files=(codebase/gan.py)
missing=0
for run in "out_nonsaturating:python run_gan.py --loss_type nonsaturating" \
           "out_wasserstein_gp:python run_gan.py --loss_type wasserstein_gp" \
           "out_nonsaturating_conditional:python run_conditional_gan.py"; do
  dir=${run%%:*} cmd=${run#*:}
  last=$(ls "$dir"/fake_[0-9]*.png 2>/dev/null | sort | tail -n 1 || true)
  if [ -z "$last" ]; then
    echo "make_submission: no sample grid in $dir/. Create it with: $cmd" >&2
    missing=1
  else
    files+=("$last")
  fi
done
[ -f codebase/gan.py ] || { echo "make_submission: codebase/gan.py is missing" >&2; missing=1; }
[ "$missing" -eq 0 ] || exit 1

rm -f hw3.zip
"$PYTHON" - "${files[@]}" <<'PY'
import sys, zipfile
with zipfile.ZipFile("hw3.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for path in sys.argv[1:]:
        z.write(path, arcname=path)  # keep the folder, e.g. out_wasserstein_gp/fake_0937.png
PY
echo "wrote hw3.zip:"
printf '  %s\n' "${files[@]}"
