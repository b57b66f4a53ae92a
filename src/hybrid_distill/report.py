"""`python -m hybrid_distill.report <sweep dir>`: markdown table and plots of a sweep (see eval/report.py)."""

from .eval.report import main

if __name__ == "__main__":
    main()
