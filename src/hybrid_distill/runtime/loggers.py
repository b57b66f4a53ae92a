"""A stage's loggers: W&B (online only with an API key) plus a CSV of every logged metric, and closing them."""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig

from ..errors import UserError
from ..reliability.csv_logger import AppendingCSVLogger
from .identity import RunContext, job_config, swept_settings


def wandb_mode(requested: str) -> str:
    """`auto` means online only when an API key is configured; tests and CI never touch the network."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def run_tags(logger_cfg: DictConfig, stage: str, model: str | None, experiment: str | None) -> list[str]:
    """W&B tags: the configured ones, plus the stage, the teacher preset and the experiment (for dashboard filters)."""
    tags = [
        *logger_cfg.get("tags", []),
        f"stage:{stage}",
        *([f"model:{model}"] if model else []),
        *([f"experiment:{experiment}"] if experiment else []),
    ]
    return list(dict.fromkeys(str(t) for t in tags))


def save_code(experiment, logger_cfg: DictConfig) -> None:
    """logger.save_code: the package's source as a W&B code artifact of the run (what exactly ran)."""
    if logger_cfg.get("save_code", False):
        experiment.log_code(str(Path(__file__).resolve().parents[1]))


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
            tags=run_tags(cfg.logger, stage, cfg.model.name if "model" in cfg else None, cfg.get("experiment_name")),
            save_dir=str(run.output_dir),
            offline=mode == "offline",
            mode=mode,
        )
        # Lightning always passes anonymous=None, which current wandb warns about ("has no effect"); leave it unset
        wandb_logger._wandb_init.pop("anonymous", None)
        swept = swept_settings(list(HydraConfig.get().overrides.task)) if HydraConfig.initialized() else {}
        wandb_logger.experiment.config.update({**job_config(cfg), "swept": swept}, allow_val_change=True)
        save_code(wandb_logger.experiment, cfg.logger)
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
