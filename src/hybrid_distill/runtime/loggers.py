"""A stage's loggers: W&B (online only with an API key) plus a CSV of every logged metric, and closing them."""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig

from ..errors import UserError
from ..reliability.csv_logger import AppendingCSVLogger
from .identity import RunContext, job_config


def wandb_mode(requested: str) -> str:
    """`auto` means online only when an API key is configured; tests and CI never touch the network."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def build_logger(cfg: DictConfig, run: RunContext, stage: str) -> list[Logger] | bool:
    """W&B (or only CSV) loggers for one stage. A local CSV of every logged metric
    (<run dir>/<stage>/metrics.csv) is always written beside W&B, for the report and offline plots."""
    kind = cfg.logger.name
    if kind == "none":
        return False
    if kind not in ("wandb", "csv"):
        raise UserError(f"logger.name={kind!r}; choose wandb, csv or none")
    loggers: list[Logger] = [AppendingCSVLogger(save_dir=str(run.output_dir), name=stage, version="")]
    if kind == "wandb":
        mode = wandb_mode(cfg.logger.mode)
        os.environ["WANDB_MODE"] = mode
        os.environ.setdefault("WANDB_SILENT", "true")
        wandb_logger = WandbLogger(
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            name=f"{run.name}/{stage}",
            group=run.group,
            job_type=stage,
            tags=list(cfg.logger.tags),
            save_dir=str(run.output_dir),
            offline=mode == "offline",
            mode=mode,
        )
        wandb_logger.experiment.config.update(job_config(cfg), allow_val_change=True)
        loggers.insert(0, wandb_logger)
    return loggers


def finish_logger(loggers: list[Logger] | bool) -> str | None:
    """Close the stage's W&B run (so the next stage gets its own) and return its local directory."""
    for logger in loggers or []:
        if isinstance(logger, WandbLogger):
            run_dir = logger.experiment.dir
            logger.experiment.finish()
            return str(Path(run_dir).parent)
    return None
