"""`python -m hybrid_distill.eval.lm_eval_cli <lm_eval arguments>`: lm_eval's own command line, with the model
`hybrid_distill` registered first (the plain `lm_eval` script only knows the models registered at its import).

    python -m hybrid_distill.eval.lm_eval_cli --model hybrid_distill --model_args pretrained=<student or run dir> \
        --tasks <tasks> [--include_path <dir with task YAMLs>] [--device cpu] [--batch_size 8]
"""

from lm_eval.__main__ import cli_evaluate

from . import lm_eval_adapter  # noqa: F401  (registers the model)


def main() -> None:
    cli_evaluate()


if __name__ == "__main__":
    main()
