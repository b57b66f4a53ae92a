"""A stage's Trainer: the `callbacks` group plus exact-resume RNG state, its own logger run and checkpoint directory,
and the checkpoint it resumes from."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ThroughputMonitor
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig

from ..atomic import remove_stale_temps
from ..errors import UserError
from ..reliability.callbacks import RNGStateCheckpoint
from ..reliability.checkpoints import check_checkpoint, checkpoint_dir, resume_checkpoint
from ..reliability.csv_logger import ResumedCSVRows
from .identity import RunContext
from .loggers import build_logger


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


def build_trainer(
    cfg: DictConfig, run: RunContext, stage: str, max_steps: int, grad_clip: float | None, val_every: int
) -> tuple[L.Trainer, list[Logger] | bool]:
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
