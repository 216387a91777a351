"""GANs on Fashion-MNIST: losses (gan.py), networks (network.py), data (data.py), training loop (train.py)."""
