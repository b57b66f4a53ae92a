"""Pieces every stage shares: seeding, the stage's optimiser settings, data modules from the `data` group."""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
from hydra.utils import get_class, instantiate
from lightning.pytorch.strategies import FSDPStrategy
from omegaconf import DictConfig, OmegaConf
from transformers import PreTrainedTokenizerBase

from ..errors import UserError, reported_as_user_error


def optim_settings(recipe: DictConfig | dict) -> dict[str, Any]:
    """lr, betas, weight decay and warmup of a stage (AdamW betas default to MambaInLlama's (0.9, 0.98))."""
    r = OmegaConf.to_container(recipe, resolve=True) if isinstance(recipe, DictConfig) else dict(recipe)
    return {
        "lr": r["lr"],
        "betas": tuple(r.get("betas", (0.9, 0.98))),
        "weight_decay": r.get("weight_decay", 0.0),
        "warmup_steps": r.get("warmup_steps", 0),
    }


def build_datamodule(data_cfg: DictConfig, tokenizer: PreTrainedTokenizerBase, batch_size: int, seq_len: int,
                     cache_dir: str, seed: int, key: str = "data") -> L.LightningDataModule:
    """Instantiate the `data` group's datamodule (config key `key`) for a tokenizer and a stage's batch geometry, and
    load its data now: a missing file, column or split is one UserError."""
    # packed text takes a block length (seq_len); conversations a maximum length (max_length)
    takes_seq_len = "seq_len" in inspect.signature(get_class(data_cfg._target_)).parameters
    length = {"seq_len" if takes_seq_len else "max_length": seq_len}
    datamodule = instantiate(data_cfg, tokenizer=tokenizer, batch_size=batch_size, cache_dir=cache_dir, seed=seed,
                             _recursive_=False, **length)
    with reported_as_user_error(f"{key}.source" if "source" in data_cfg else key):
        datamodule.setup("fit")
    if len(datamodule.train_dataset) == 0:
        raise UserError(f"{key}: no training rows left (rows longer than {seq_len} tokens are skipped: "
                        "raise the stage's seq_len or use shorter rows)")
    return datamodule


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
