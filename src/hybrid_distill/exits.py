"""How a run ends for the shell: exit statuses, and bad input / divergence / preemption as one line each."""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable

from omegaconf import DictConfig

from .console import say
from .errors import Preempted, TrainingDiverged, UserError

# exit statuses besides 0 (finished) and Hydra's 1 (config composition error), for scripts and schedulers
EXIT_BAD_INPUT = 2  # a config value, file or data row is wrong: fix it and rerun
EXIT_DIVERGED = 3  # a non-finite loss or gradient stopped training: its last good checkpoint is kept
EXIT_PREEMPTED = 75  # stopped by a signal after saving last.ckpt: rerun with resume=<run dir> (EX_TEMPFAIL)


def exit_on_user_error(fn: Callable[[DictConfig], object], cfg: DictConfig) -> None:
    """Bad input (config value, file, data row), divergence and preemption end the run with one clear line and an
    exit status, not a traceback (HYDRA_FULL_ERROR=1 shows the traceback, as for Hydra's own errors)."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from .data.schemas import DataRowError

    try:
        fn(cfg)
    except (UserError, DataRowError, TrainingDiverged) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        say("[red]error:[/]", str(err))
        sys.exit(EXIT_DIVERGED if isinstance(err, TrainingDiverged) else EXIT_BAD_INPUT)
    except (Preempted, SIGTERMException) as err:  # Lightning's: SIGTERM outside the training loop, nothing to save
        say("[yellow]preempted:[/]", f"{str(err) or 'SIGTERM outside training'}; continue with "
            f"`python train.py resume={cfg.paths.output_dir}` (a requeued job resumes by itself)")
        sys.exit(EXIT_PREEMPTED)


def exiting_on_user_error(resolver: Callable) -> Callable:
    """A config resolver that Hydra calls while it sets a run up (run directory, ...): a UserError there is one line
    and exit 2 too (Hydra would print its own traceback-like report and exit 1)."""
    @functools.wraps(resolver)
    def resolve(*args):
        try:
            return resolver(*args)
        except UserError as err:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            say("[red]error:[/]", str(err))
            sys.exit(EXIT_BAD_INPUT)

    return resolve
