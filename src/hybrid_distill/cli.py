"""Command-line entry points (`python train.py`, `hd-train`): Hydra composes the config, a stage runs."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

import hydra
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from .errors import UserError

console = Console()

# the directory train.py was started from; unlike ${hydra:runtime.cwd} it also resolves while a multirun
# computes its sweep directory, before any job (and its HydraConfig) exists
if not OmegaConf.has_resolver("launch_dir"):
    OmegaConf.register_new_resolver("launch_dir", os.getcwd)


def config_dir() -> str:
    """conf/ at the repository root (editable install), or HD_CONFIG_DIR."""
    env = os.environ.get("HD_CONFIG_DIR")
    if env:
        return str(Path(env).resolve())
    return str(Path(__file__).resolve().parents[2] / "conf")


def stage_runners() -> dict[str, Callable]:
    from .stages.distill import run_distill
    from .stages.dpo import run_dpo
    from .stages.pipeline import run_pipeline
    from .stages.seqkd import run_seqkd
    from .stages.teacher import run_pretrain_teacher

    runners = {"pretrain_teacher": run_pretrain_teacher, "seqkd": run_seqkd, "distill": run_distill, "dpo": run_dpo}
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
    runners = stage_runners()
    if cfg.stage.name not in runners:
        raise UserError(f"stage '{cfg.stage.name}' is not runnable; choose one of {', '.join(runners)}")
    results = runners[cfg.stage.name](cfg, ctx)
    if rank_zero_only.rank == 0:  # under DDP every rank runs this; one writes
        write_json_atomic(ctx.output_dir / "metrics.json", results)
        print_summary(results, ctx.output_dir, time.perf_counter() - start)
    return results


def exit_on_user_error(fn: Callable[[DictConfig], object], cfg: DictConfig) -> None:
    """Bad input (config value, file, data row) ends the run with one clear line, not a traceback."""
    from .data.schemas import DataRowError

    try:
        fn(cfg)
    except (UserError, DataRowError) as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(2)


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
def _train(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    exit_on_user_error(run, cfg)


def train_main() -> None:
    _train()


def eval_main() -> None:
    from .eval.main import main

    main()
