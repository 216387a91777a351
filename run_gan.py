"""Train an unconditional GAN on Fashion-MNIST and write sample grids to out_<loss_type>/.

    python run_gan.py                              # non-saturating GAN (handout 1.2), one epoch
    python run_gan.py --loss_type wasserstein_gp   # WGAN-GP (handout 4.5)
    python run_gan.py --loss_type minimax          # saturating loss of 1.1, to watch it stall

See ``python run_gan.py --help`` for all flags.
"""
from codebase.cli import main

if __name__ == "__main__":
    main(__doc__.splitlines()[0], loss_types=["nonsaturating", "wasserstein_gp", "minimax"])
