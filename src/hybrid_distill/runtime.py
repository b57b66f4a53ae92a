"""What every stage needs around its LightningModule: run identity, W&B/CSV logger, callbacks, Trainer, and the
checkpoint it resumes from."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ThroughputMonitor
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf

from .errors import UserError
from .atomic import remove_stale_temps, write_file_atomic
from .reliability.callbacks import RNGStateCheckpoint
from .reliability.checkpoints import check_checkpoint, checkpoint_dir, resume_checkpoint
from .reliability.csv_logger import AppendingCSVLogger, ResumedCSVRows


@dataclass(frozen=True)
class RunContext:
    output_dir: Path  # this run's Hydra output directory
    name: str  # derived from the command-line overrides, e.g. "mamba_ratio=0.75,loss=kl"
    group: str  # one W&B group per sweep (or per stage for single runs)


def run_context(cfg: DictConfig) -> RunContext:
    """Identity of the current run from Hydra's runtime (or cfg.paths.output_dir outside Hydra)."""
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        output_dir = Path(hc.runtime.output_dir)
        name = hc.job.override_dirname or "default"
        multirun = str(hc.mode) == "RunMode.MULTIRUN"
        group = f"sweep-{Path(hc.sweep.dir).name}" if multirun else f"{cfg.task_name}-{cfg.stage.name}"
    else:
        output_dir = Path(cfg.paths.output_dir)
        name, group = "default", f"{cfg.task_name}-{cfg.stage.name}"
    if cfg.get("experiment_name"):
        group = str(cfg.experiment_name)
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(output_dir)  # left by a process killed mid-write (metrics.json, ...)
    return RunContext(output_dir=output_dir, name=name, group=group)


def job_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved run config as plain data (without Hydra's own node, present when composed in tests)."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)


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


# callbacks whose only output is logged metrics (Lightning refuses them without a logger)
LOGGING_CALLBACKS = (LearningRateMonitor, ThroughputMonitor)


def build_callbacks(cfg: DictConfig, checkpoints: Path, has_logger: bool) -> list[L.Callback]:
    """The `callbacks` group, plus what an exact resume needs whatever the group holds: the RNG states in checkpoints,
    and metrics.csv cut back to the resumed step."""
    callbacks: list[L.Callback] = [RNGStateCheckpoint(), ResumedCSVRows()]
    for cb_cfg in (cfg.get("callbacks") or {}).values():
        if cb_cfg is None:
            continue
        try:
            cb = instantiate(cb_cfg)
        except InstantiationException as err:  # hydra wraps what the callback raised; a UserError stays one
            if isinstance(err.__cause__, UserError):
                raise err.__cause__ from None
            raise
        if isinstance(cb, LOGGING_CALLBACKS) and not has_logger:
            continue
        if isinstance(cb, ModelCheckpoint):
            cb.dirpath = str(checkpoints)
        callbacks.append(cb)
    return callbacks


def build_trainer(cfg: DictConfig, run: RunContext, stage: str, max_steps: int, grad_clip: float | None,
                  val_every: int) -> tuple[L.Trainer, list[Logger] | bool]:
    """A Trainer for one stage: its own logger run and checkpoint directory under the run dir."""
    logger = build_logger(cfg, run, stage)
    stage_dir = stage_output_dir(run, stage)
    remove_stale_temps(checkpoint_dir(stage_dir))  # a checkpoint write killed mid-way
    trainer = instantiate(
        cfg.trainer,
        max_steps=max_steps,
        gradient_clip_val=grad_clip,
        val_check_interval=min(val_every, max_steps) if max_steps > 0 else 1,
        logger=logger,
        callbacks=build_callbacks(cfg, checkpoint_dir(stage_dir), bool(logger)),
        default_root_dir=str(stage_dir),
    )
    return trainer, logger


def stage_output_dir(run: RunContext, stage: str) -> Path:
    """<run dir>/<stage>: the stage's metrics.csv and checkpoints/."""
    return run.output_dir / stage


def resume_path(cfg: DictConfig, run: RunContext, stage: str, module: L.LightningModule) -> str | None:
    """The checkpoint `stage` resumes from (None: start fresh), checked against `module`. ckpt_path applies to the
    configured stage only, not to a teacher pretrained on the way; without it, a stage resumes its own last.ckpt."""
    requested = cfg.ckpt_path if cfg.stage.name == stage else None
    path = resume_checkpoint(requested, stage_output_dir(run, stage))
    if path is None:
        return None
    check_checkpoint(path, module)
    rank_zero_info(f"{stage}: resuming from {path}")
    return str(path)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON through a temp file and a rename, so a crash never leaves half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomic(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=2, default=float)))
    except OSError as err:  # read-only or full file system: the earlier file, if any, is kept
        raise UserError(f"{path} could not be written ({err.strerror or err})") from err
