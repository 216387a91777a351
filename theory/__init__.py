"""The written problems' demonstrations (docs/theory.md): nce.py and nce_demo.py (5.1, noise-contrastive
estimation), minimax.py (1.1, the saturating generator loss). Instructors' material: not in the starter."""
