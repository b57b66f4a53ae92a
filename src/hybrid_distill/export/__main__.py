"""`python -m hybrid_distill.export <student dir> <out dir> [--format bamba] [--no-verify]`."""

from __future__ import annotations

import argparse
import sys

from ..console import say
from ..errors import EXIT_BAD_INPUT, UserError
from .api import FORMATS, export_student


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hybrid_distill.export", description=__doc__)
    parser.add_argument(
        "student_dir", help="a saved student (<run dir>/student): config.json, model.safetensors, tokenizer files"
    )
    parser.add_argument("out_dir", help="the directory to create (must not exist)")
    parser.add_argument("--format", default="bamba", choices=sorted(FORMATS))
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip loading the export back and comparing it with the student layer by layer",
    )
    args = parser.parse_args(argv)
    try:
        report = export_student(args.student_dir, args.out_dir, format=args.format, verify=not args.no_verify)
    except UserError as err:
        say("[red]error:[/]", str(err))
        return EXIT_BAD_INPUT
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
