"""GANs on Fashion-MNIST: losses (gan.py), networks (network.py), data (data.py), training loop (train.py)."""
import os

# OpenMP threads that spin while waiting make torch up to 7x slower per step as soon as another process shares the
# CPU (measured on 2 cores: 1087 ms/step spinning, 150 ms/step passive). Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
