"""`python -m hybrid_distill.eval.lm_eval_cli <lm_eval arguments>` (also `hd-lm-eval`): lm_eval's own command line,
with the model `hybrid_distill` registered first (the plain `lm_eval` script only knows the models registered at its
import) and the package's own tasks (eval/lm_eval_tasks/: hd_recall_mc, hd_copy_gen, hd_text_ppl) always included,
beside an --include_path of yours.

    python -m hybrid_distill.eval.lm_eval_cli --model hybrid_distill --model_args pretrained=<student or run dir> \
        --tasks <tasks> [--include_path <dir with task YAMLs>] [--device cpu] [--batch_size 8]
"""

from lm_eval._cli import HarnessCLI
from lm_eval.utils import setup_logging

from . import lm_eval_adapter  # noqa: F401  (registers the model)
from .lm_eval_tasks import TASKS_DIR


def main() -> None:
    """lm_eval's cli_evaluate, with TASKS_DIR added to the task paths (lm_eval's TaskManager takes a list)."""
    setup_logging()
    parser = HarnessCLI()
    args = parser.parse_args()
    if hasattr(args, "include_path"):  # run / ls / validate
        args.include_path = [str(TASKS_DIR), *([args.include_path] if args.include_path else [])]
    parser.execute(args)


if __name__ == "__main__":
    main()
