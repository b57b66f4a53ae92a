"""Pieces every stage shares: seeding, validation before training, optional metrics."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.strategies import FSDPStrategy


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
