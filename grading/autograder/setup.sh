#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu 22.04 by default; 24.04 works).
# The grader gets a Python of its own in /opt/grader-venv, readable by every user: in user mode the sandboxed
# children run it as unprivileged uids. Versions are pinned to those the autograder was built and tested with.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends bubblewrap util-linux ca-certificates libseccomp2
for version in 3.12 3.11; do  # torch @TORCH@ needs Python 3.11 or later; 22.04 has 3.11 in universe, 24.04 has 3.12
  if apt-get install -y -qq --no-install-recommends "python$version" "python$version-venv"; then
    PYTHON=python$version
    break
  fi
done
"${PYTHON:?no Python 3.11 or 3.12 could be installed}" -m venv /opt/grader-venv
PIP=(/opt/grader-venv/bin/pip install -q --no-cache-dir)
# The CPU-only builds: about half the memory of a CUDA build (Gradescope allows 768 MB).
if ! "${PIP[@]}" --retries 1 --timeout 30 --index-url https://download.pytorch.org/whl/cpu "torch==@TORCH@" \
    "torchvision==@TORCHVISION@"; then
  echo "setup: PyTorch's CPU-only index is out of reach; installing torch @TORCH@ from the default index instead" \
    "(on Linux a CUDA build: it grades alike, with more memory)" >&2
  "${PIP[@]}" "torch==@TORCH@" "torchvision==@TORCHVISION@"
fi
# Everything the starter's requirements.txt gives students (matplotlib, tqdm, torchmetrics, ...), as tested here:
# a leftover import in gan.py works here as it did on the student's machine.
"${PIP[@]}" -r "$(dirname "$0")/requirements.txt" -c "$(dirname "$0")/constraints.txt"
# The seccomp filter every grading child installs before the student's code runs (no network, no keyrings).
"${PIP[@]}" "pyseccomp==@PYSECCOMP@"
# The grid checks compare samples with Fashion-MNIST: the distribution's package where it has one, else a download.
if ! apt-get install -y -qq --no-install-recommends dataset-fashion-mnist; then
  /opt/grader-venv/bin/python -c 'from torchvision.datasets import FashionMNIST
for train in (True, False): FashionMNIST("/opt/grader-data", train=train, download=True)' ||
    echo "setup: Fashion-MNIST could not be fetched; the sample grids are reported as not judged" >&2
fi
chmod -R go+rX /opt/grader-venv
/opt/grader-venv/bin/python -c 'import torch, torchvision, numpy, PIL, matplotlib, tqdm, torchmetrics, pyseccomp
print("setup: torch", torch.__version__)'
# User mode's jail (hard links of the system's libraries and this Python, nothing else of the host): built once here.
cd "$(dirname "$0")" && /opt/grader-venv/bin/python -m grading prepare
