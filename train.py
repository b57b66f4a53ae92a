"""python train.py [overrides]: see README.md. Thin wrapper around hybrid_distill.cli."""

from hybrid_distill.cli import train_main

if __name__ == "__main__":
    train_main()
