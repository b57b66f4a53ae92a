"""python eval.py ckpt=<run dir or checkpoint>: see README.md. Thin wrapper around hybrid_distill.cli."""

from hybrid_distill.cli import eval_main

if __name__ == "__main__":
    eval_main()
