"""Pieces every stage shares: seeding, the stage's optimiser settings, validation before training."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.strategies import FSDPStrategy
from omegaconf import DictConfig, OmegaConf


def optim_settings(recipe: DictConfig | dict) -> dict[str, Any]:
    """lr, betas, weight decay and warmup of a stage (AdamW betas default to MambaInLlama's (0.9, 0.98))."""
    r = OmegaConf.to_container(recipe, resolve=True) if isinstance(recipe, DictConfig) else dict(recipe)
    return {
        "lr": r["lr"],
        "betas": tuple(r.get("betas", (0.9, 0.98))),
        "weight_decay": r.get("weight_decay", 0.0),
        "warmup_steps": r.get("warmup_steps", 0),
    }


def seed_everything(seed: int) -> None:
    L.seed_everything(seed, workers=True, verbose=False)


def validate_before_fit(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule) -> dict:
    """Held-out metrics before training. Skipped under FSDP: a validate() call wraps the module's layers, and
    Lightning then leaves the root unwrapped for fit(), which breaks clipping and sharded state."""
    if isinstance(trainer.strategy, FSDPStrategy):
        return {}
    return trainer.validate(module, datamodule=datamodule, verbose=False)[0]


def metric(results: dict, key: str) -> float | None:
    return float(results[key]) if key in results else None
