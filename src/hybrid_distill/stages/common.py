"""Pieces every stage shares: seeding, the stage's optimiser settings, data modules from the `data` group."""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from transformers import PreTrainedTokenizerBase


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
                     cache_dir: str, seed: int) -> L.LightningDataModule:
    """Instantiate the `data` group's datamodule for a tokenizer and a stage's batch geometry."""
    # packed text takes a block length (seq_len); conversations a maximum length (max_length)
    takes_seq_len = "seq_len" in inspect.signature(get_class(data_cfg._target_)).parameters
    length = {"seq_len" if takes_seq_len else "max_length": seq_len}
    return instantiate(data_cfg, tokenizer=tokenizer, batch_size=batch_size, cache_dir=cache_dir, seed=seed,
                       _recursive_=False, **length)


def seed_everything(seed: int) -> None:
    L.seed_everything(seed, workers=True, verbose=False)
