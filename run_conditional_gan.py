"""Train the class-conditional GAN with a projection discriminator (handout 3.2) on Fashion-MNIST.

    python run_conditional_gan.py    # one epoch; grids in out_nonsaturating_conditional/, column c = class c

See ``python run_conditional_gan.py --help`` for all flags.
"""
from codebase.cli import main

if __name__ == "__main__":
    main(__doc__.splitlines()[0], loss_type="nonsaturating", conditional=True)
