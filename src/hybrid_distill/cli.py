"""Command-line entry points (`python train.py`, `hd-train`): Hydra composes the config, a stage runs."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import Preempted, TrainingDiverged, UserError
from .paths import config_dir
from .reliability.rundir import check_resume_dir, register_resolvers

console = Console()

# exit statuses besides 0 (finished) and Hydra's 1 (config composition error), for scripts and schedulers
EXIT_BAD_INPUT = 2  # a config value, file or data row is wrong: fix it and rerun
EXIT_DIVERGED = 3  # a non-finite loss or gradient stopped training: its last good checkpoint is kept
EXIT_PREEMPTED = 75  # stopped by a signal after saving last.ckpt: rerun with resume=<run dir> (EX_TEMPFAIL)

# the directory train.py was started from; unlike ${hydra:runtime.cwd} it also resolves while a multirun
# computes its sweep directory, before any job (and its HydraConfig) exists
if not OmegaConf.has_resolver("launch_dir"):
    OmegaConf.register_new_resolver("launch_dir", os.getcwd)
register_resolvers()  # ${unique_dir:...} and ${run_dir:...} of hydra/default.yaml


def stage_runners() -> dict[str, Callable]:
    from .eval.main import run_eval
    from .stages.distill import run_distill
    from .stages.dpo import run_dpo
    from .stages.pipeline import run_pipeline
    from .stages.seqkd import run_seqkd
    from .stages.teacher import run_pretrain_teacher

    runners = {"pretrain_teacher": run_pretrain_teacher, "seqkd": run_seqkd, "distill": run_distill, "dpo": run_dpo,
               "eval": run_eval}
    return {**runners, "pipeline": lambda cfg, run: run_pipeline(cfg, run, runners)}


def print_summary(results: dict, run_dir: Path, seconds: float) -> None:
    table = Table(title=f"hybrid_distill summary ({seconds:.0f} s)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in results.items():
        if key.endswith("_dir") or value is None:
            continue
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    console.print(f"run directory: {run_dir}")
    for key, value in results.items():
        if key.endswith("_dir") and value:
            console.print(f"{key.replace('_', ' ')}: {value}")


def run(cfg: DictConfig) -> dict:
    """Run the configured stage; write metrics.json into the run directory; return the metrics."""
    from .runtime import run_context, write_json_atomic

    start = time.perf_counter()
    ctx = run_context(cfg)
    if cfg.get("resume"):
        if HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN":
            raise UserError("resume= continues one run; to continue a sweep pass hydra.sweep.dir=<its sweep dir> "
                            "with the same sweep overrides")
        check_resume_dir(ctx.output_dir)
    runners = stage_runners()
    if cfg.stage.name not in runners:
        raise UserError(f"stage '{cfg.stage.name}' is not runnable; choose one of {', '.join(runners)}")
    results = runners[cfg.stage.name](cfg, ctx)
    if rank_zero_only.rank == 0:  # under DDP every rank runs this; one writes
        write_json_atomic(ctx.output_dir / "metrics.json", results)
        print_summary(results, ctx.output_dir, time.perf_counter() - start)
    return results


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
        _say("[red]error:[/]", str(err))
        sys.exit(EXIT_DIVERGED if isinstance(err, TrainingDiverged) else EXIT_BAD_INPUT)
    except (Preempted, SIGTERMException) as err:  # Lightning's: SIGTERM outside the training loop, nothing to save
        _say("[yellow]preempted:[/]", f"{str(err) or 'SIGTERM outside training'}; continue with "
             f"`python train.py resume={cfg.paths.output_dir}` (a requeued job resumes by itself)")
        sys.exit(EXIT_PREEMPTED)


def _say(label: str, message: str) -> None:
    # one line whatever the terminal width; the message is text, not rich markup (it may hold [brackets])
    console.print(f"{label} {escape(message)}", highlight=False, soft_wrap=True)


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
def _train(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    exit_on_user_error(run, cfg)


def train_main() -> None:
    _train()


def eval_main() -> None:
    from .eval.main import main

    main()
