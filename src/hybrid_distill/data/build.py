"""The `data` group's datamodule for a stage: instantiated for a tokenizer and the stage's batch geometry, its data
loaded at once so that bad input fails before any model is built."""

from __future__ import annotations

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import PreTrainedTokenizerBase

from ..errors import UserError, reported_as_user_error


def build_datamodule(
    data_cfg: DictConfig,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    seq_len: int,
    cache_dir: str,
    seed: int,
    key: str = "data",
) -> L.LightningDataModule:
    """Instantiate the `data` group's datamodule (config key `key`) for a tokenizer and a stage's batch geometry, and
    load its data now: a missing file, column or split is one UserError."""
    # seq_len: the block length of packed text, the longest kept row of conversations
    datamodule = instantiate(
        data_cfg,
        tokenizer=tokenizer,
        batch_size=batch_size,
        seq_len=seq_len,
        cache_dir=cache_dir,
        seed=seed,
        _recursive_=False,
    )
    with reported_as_user_error(f"{key}.source" if "source" in data_cfg else key):
        datamodule.setup("fit")
    if len(datamodule.train_dataset) == 0:
        raise UserError(
            f"{key}: no training rows left (rows longer than {seq_len} tokens are skipped: "
            "raise the stage's seq_len or use shorter rows)"
        )
    return datamodule
