#!/usr/bin/env bash
# Set-up for a fresh machine: the Python requirements, then Fashion-MNIST from Debian's package where apt-get exists.
# Without apt-get (macOS, Windows, non-Debian Linux) the run scripts download the data with torchvision instead.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

"$PYTHON" -m pip install -q -r requirements.txt

DATA=/usr/share/datasets/fashion-mnist
if [ -f "$DATA/train-images-idx3-ubyte.gz" ]; then
  echo "setup: Fashion-MNIST found in $DATA"
elif command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=sudo; fi
  if $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist; then
    echo "setup: Fashion-MNIST installed in $DATA"
  else
    echo "setup: could not install dataset-fashion-mnist; the first run will download the data with torchvision"
  fi
else
  echo "setup: no apt-get; the first run will download Fashion-MNIST with torchvision into ./data"
fi
