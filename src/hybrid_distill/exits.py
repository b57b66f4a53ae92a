"""How a run ends for the shell: exit statuses, and bad input / divergence / preemption as one line each."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, TypeVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from .atomic import check_writable, write_file_atomic
from .console import say
from .errors import EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_PREEMPTED, Preempted, TrainingDiverged, UserError
from .reliability.recorded_config import is_new_run
from .reliability.rundir import holding, setup_only

T = TypeVar("T")


def exit_on_user_error(fn: Callable[[DictConfig], T], cfg: DictConfig, after_preemption: str | None = None) -> T:
    """Bad input (config value, file, data row), divergence and preemption end the run with one clear line and an
    exit status, not a traceback (HYDRA_FULL_ERROR=1 shows the traceback, as for Hydra's own errors).
    `after_preemption`: what to do after a preemption (default: resume the run in its directory)."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from .data.schemas import DataRowError

    try:
        return fn(cfg)
    except (UserError, DataRowError, TrainingDiverged) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        say("[red]error:[/]", str(err))
        status = EXIT_DIVERGED if isinstance(err, TrainingDiverged) else EXIT_BAD_INPUT
        mark_failed(Path(cfg.paths.output_dir), str(err), status)
        sys.exit(status)
    except (Preempted, SIGTERMException) as err:  # Lightning's: SIGTERM outside the training loop, nothing to save
        after_preemption = after_preemption or (
            f"continue with `python train.py resume={cfg.paths.output_dir}` (a requeued job resumes by itself)"
        )
        say("[yellow]preempted:[/]", f"{str(err) or 'SIGTERM outside training'}; {after_preemption}")
        sys.exit(EXIT_PREEMPTED)


FAILED = "failed.json"


def mark_failed(run_dir: Path, error: str, status: int) -> None:
    """A new run that failed leaves no directory that looks like a run: removed when it holds only what was written
    before the run started (nothing to resume or inspect), else marked with failed.json (the error and the exit
    status; a later successful resume removes it). A continued run's directory, or one that another process is
    working in (e.g. it was refused for that reason), is left as it was."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only  # here: cli (--help, TAB) never loads Lightning

    if rank_zero_only.rank != 0 or not run_dir.is_dir() or not is_new_run(run_dir):
        return  # another rank's, gone already, or a continued run's
    try:
        with holding(run_dir):
            if setup_only(run_dir):
                shutil.rmtree(run_dir)
            else:
                write_file_atomic(
                    run_dir / FAILED,
                    lambda tmp: tmp.write_text(
                        json.dumps(
                            {"error": error, "exit_status": status, "time": datetime.now(timezone.utc).isoformat()},
                            indent=2,
                        )
                    ),
                )
    except (OSError, UserError):  # a read-only or full file system, or another run's directory: leave it
        pass


class OutputDirChecks(Callback):
    """A Hydra callback (hydra/default.yaml): the run or sweep directory is created and checked before Hydra writes
    into it, so that an unwritable one (`hydra.run.dir` on a read-only file system, or below a file) is one line and
    exit 2, not Hydra's traceback."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        exiting_on_user_error(check_writable)(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        exiting_on_user_error(check_writable)(Path(config.hydra.sweep.dir), "hydra.sweep.dir")


def remove_if_setup_only(run_dir: Path) -> bool:
    """Remove `run_dir` if this process started it and it holds only what was written before the job (Hydra's
    .hydra/, its log, the lock): nothing to resume or inspect. Returns whether it was removed."""
    try:
        if not run_dir.is_dir() or not is_new_run(run_dir) or not setup_only(run_dir):
            return False
        shutil.rmtree(run_dir)
        return True
    except OSError:  # a read-only file system: the directory stays
        return False


def exiting_on_user_error(resolver: Callable) -> Callable:
    """A config resolver or check that Hydra calls while it sets a run up (run directory, ...): a UserError there is
    one line and exit 2 too (Hydra would print its own traceback-like report and exit 1)."""

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
