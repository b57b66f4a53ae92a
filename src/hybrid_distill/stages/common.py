"""What the training stages share: seeding, their datamodule, validate-fit-validate, saving the trained model."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy
from omegaconf import DictConfig
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data.build import build_datamodule
from ..lit.base import StageModule
from ..models.trainable import float32_trainable


def master_weights(cfg: DictConfig, model: torch.nn.Module) -> None:
    """Under a mixed precision (trainer.precision *-mixed) the parameters that train become float32 masters
    (models.trainable.float32_trainable): call it once what trains is set and the model has run eagerly."""
    if str(cfg.trainer.precision).endswith("-mixed"):
        float32_trainable(model)


def seed_everything(seed: int) -> None:
    L.seed_everything(seed, workers=True, verbose=False)


def stage_datamodule(cfg: DictConfig, tokenizer: PreTrainedTokenizerBase) -> L.LightningDataModule:
    """The `data` group's datamodule at the stage's batch size and sequence length, its data loaded."""
    return build_datamodule(
        cfg.data,
        tokenizer,
        cfg.stage.batch_size,
        cfg.stage.seq_len,
        str(Path(cfg.paths.cache_dir) / "datasets"),
        cfg.seed,
    )


def validate_before_fit(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule) -> dict:
    """Held-out metrics before training. Skipped under FSDP: a validate() call wraps the module's layers, and
    Lightning then leaves the root unwrapped for fit(), which breaks clipping and sharded state."""
    if isinstance(trainer.strategy, FSDPStrategy):
        return {}
    return trainer.validate(module, datamodule=datamodule, verbose=False)[0]


def log_at_step_count(trainer: L.Trainer, metrics: dict[str, float]) -> None:
    """Log `metrics` where a validation after fit logs them, at the optimizer steps taken (Lightning logs the fit
    loop's validations at the index of the batch they follow, one less): curves end at the step count."""
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)
        logger.save()


def fit_and_validate(
    trainer: L.Trainer,
    module: StageModule,
    datamodule: L.LightningDataModule,
    ckpt_path: str | None,
    train: bool = True,
) -> tuple[dict, dict]:
    """(held-out metrics before, after) training `module`, resumed from `ckpt_path` (runtime.build_trainer's).
    train=False only evaluates (after = before, unless FSDP skipped that). When the fit loop's last validation
    was at its last step, `after` is that validation's metrics, not a second pass over the same weights."""
    before = validate_before_fit(trainer, module, datamodule)
    if train:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        last = module.last_fit_validation
        if before and last and last[0] == trainer.global_step and before.keys() <= last[1].keys():
            after = {k: last[1][k] for k in before}
            log_at_step_count(trainer, after)
            return before, after
    elif before:
        return before, before
    return before, trainer.validate(module, datamodule=datamodule, verbose=False)[0]


def save_trained(
    trainer: L.Trainer, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: Path
) -> Path:
    """The trained model and its tokenizer as a HF directory, written by one rank."""
    if trainer.is_global_zero:
        model.save_pretrained(str(directory))
        tokenizer.save_pretrained(str(directory))
    return directory


def metric(results: dict, key: str) -> float | None:
    return float(results[key]) if key in results else None


def accelerator_device(cfg: DictConfig) -> torch.device | None:
    """The GPU for work a stage does outside the Trainer (seqkd generation, calibration) when the run trains on one
    and it is there; None: leave the models where they are."""
    return torch.device("cuda") if cfg.trainer.accelerator == "gpu" and torch.cuda.is_available() else None
