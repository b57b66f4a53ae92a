"""How a run ends for the shell: exit statuses, and bad input / divergence / preemption as one line each."""

from __future__ import annotations

import os
import sys
from typing import Callable

from omegaconf import DictConfig

from .console import say
from .errors import EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_PREEMPTED, Preempted, TrainingDiverged, UserError


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
