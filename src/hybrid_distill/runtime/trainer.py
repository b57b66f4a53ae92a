"""A stage's Trainer: the `callbacks` group plus exact-resume RNG state, its own logger run and checkpoint directory,
and the checkpoint it resumes from (or whose weights it starts from), checked before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ThroughputMonitor
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig

from ..atomic import remove_stale_temps
from ..console import say
from ..errors import UserError
from ..reliability.callbacks import RNGStateCheckpoint
from ..reliability.checkpoints import check_checkpoint, checkpoint_dir, load_weights, resume_checkpoint
from ..reliability.csv_logger import ResumedCSVRows
from ..reliability.recorded_config import ignored_on_restore, resume_checked
from .identity import RunContext, job_config
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
            # last.ckpt stays last.ckpt: with the counter, a copied or moved run directory (another path than the
            # one its checkpoints record) would get last-v1.ckpt, and a later resume the stale last.ckpt
            cb._enable_version_counter = False
        callbacks.append(cb)
    return callbacks


class StageTrainer(NamedTuple):
    """What build_trainer gives a stage."""

    trainer: L.Trainer
    logger: list[Logger] | bool
    ckpt_path: str | None  # what trainer.fit resumes from (None: start at step 0)


def build_trainer(
    cfg: DictConfig,
    run: RunContext,
    stage: str,
    module: L.LightningModule,
    max_steps: int,
    grad_clip: float | None,
    val_every: int,
) -> StageTrainer:
    """A Trainer for `module`'s stage: its own logger run and checkpoint directory under the run dir, and the
    checkpoint it resumes from (or the weights it starts from), checked before the loggers write anything."""
    stage_dir = stage_output_dir(run, stage)
    remove_stale_temps(checkpoint_dir(stage_dir))  # a checkpoint write killed mid-way
    ckpt_path = starting_checkpoint(cfg, run, stage, module)
    resume_checked(stage_dir)  # a resume's allowed changes are recorded from here on
    logger = build_logger(cfg, run, stage)
    trainer = instantiate(
        cfg.trainer,
        max_steps=max_steps,
        gradient_clip_val=grad_clip,
        val_check_interval=min(val_every, max_steps) if max_steps > 0 else 1,
        logger=logger,
        callbacks=build_callbacks(cfg, checkpoint_dir(stage_dir), bool(logger)),
        default_root_dir=str(stage_dir),
    )
    return StageTrainer(trainer, logger, ckpt_path)


def stage_output_dir(run: RunContext, stage: str) -> Path:
    """<run dir>/<stage>: the stage's metrics.csv and checkpoints/."""
    return run.output_dir / stage


def starting_checkpoint(cfg: DictConfig, run: RunContext, stage: str, module: L.LightningModule) -> str | None:
    """The checkpoint `stage` resumes from (None: start at step 0), checked against `module`. ckpt_path and
    weights_from apply to the configured stage only, not to a teacher pretrained on the way. Without ckpt_path a
    stage resumes its own newest checkpoint; with neither that nor ckpt_path, weights_from loads that checkpoint's
    weights into `module` (a fresh optimizer and schedule: this run's stage.lr applies)."""
    configured = cfg.stage.name == stage
    requested, weights = (cfg.ckpt_path, cfg.get("weights_from")) if configured else (None, None)
    if requested is not None and weights is not None:
        raise UserError(
            f"ckpt_path={requested} and weights_from={weights}: pass one (ckpt_path continues a checkpoint's "
            "training state; weights_from starts from its weights with a fresh optimizer)"
        )
    path = resume_checkpoint(requested, stage_output_dir(run, stage))
    if path is None and weights is not None:
        if not Path(weights).is_file():
            raise UserError(
                f"weights_from={weights}: no such file; pass a Lightning .ckpt, e.g. "
                "<run dir>/<stage>/checkpoints/last-finite.ckpt"
            )
        load_weights(Path(weights), module)
        rank_zero_info(f"{stage}: weights from {weights}; optimizer and schedule start afresh")
        return None
    if path is None:
        return None
    check_checkpoint(path, module)
    rank_zero_info(f"{stage}: resuming from {path}")
    if requested is not None:
        ignored = ignored_on_restore(path, job_config(cfg))
        if ignored:
            say(
                "[yellow]warning:[/]",
                f"ckpt_path={requested} restores the optimizer and random states of the run that saved it, so "
                f"this run's changes are ignored: {'; '.join(ignored)}; to start from its weights with a fresh "
                f"optimizer pass weights_from={requested} instead",
            )
    return str(path)
