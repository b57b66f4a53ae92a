"""The `data` group's datamodule for a stage: built for a tokenizer and the stage's batch geometry, its data loaded at
once so that bad input fails before any model is built."""

from __future__ import annotations

from typing import Any, Iterator

import lightning as L
from omegaconf import DictConfig, OmegaConf
from transformers import PreTrainedTokenizerBase

from ..errors import UserError, reported_as_user_error
from .datamodules import ChatDataModule, PreferenceDataModule, TextDataModule
from .recall_mix import RecallMixDataModule

# the datamodules a `data` config may name as its `_target_`, looked up here rather than imported by name: a config
# read from someone else's run directory (eval.py) builds one of these from plain values, never other code
DATAMODULES = {
    f"{cls.__module__}.{cls.__qualname__}": cls
    for cls in (TextDataModule, ChatDataModule, PreferenceDataModule, RecallMixDataModule)
}


def _hydra_keys(node: Any, key: str) -> Iterator[str]:
    """Dotted keys of `_target_`, `_args_`, ... anywhere inside plain config data."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for child, value in items:
        dotted = f"{key}.{child}"
        if str(child).startswith("_"):
            yield dotted
        yield from _hydra_keys(value, dotted)


def build_datamodule(
    data_cfg: DictConfig,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    seq_len: int,
    cache_dir: str,
    seed: int,
    key: str = "data",
) -> L.LightningDataModule:
    """The datamodule of the `data` group (config key `key`) for a tokenizer and a stage's batch geometry, with its data
    loaded now: an unknown datamodule or setting, a missing file, column or split is one UserError."""
    settings = OmegaConf.to_container(data_cfg, resolve=True)
    target = settings.pop("_target_", None)
    if target not in DATAMODULES:
        raise UserError(
            f"{key}._target_={target!r} is not a datamodule of hybrid_distill; one of {', '.join(DATAMODULES)}"
        )
    special = next(_hydra_keys(settings, key), None)
    if special is not None:
        raise UserError(f"{special}: a data config holds plain settings of {target}, nothing to instantiate")
    try:
        # seq_len: the block length of packed text, the longest kept row of conversations
        datamodule = DATAMODULES[target](
            **settings, tokenizer=tokenizer, batch_size=batch_size, seq_len=seq_len, cache_dir=cache_dir, seed=seed
        )
    except TypeError as err:  # a setting the datamodule does not take
        raise UserError(f"{key}: {err}") from err
    with reported_as_user_error(f"{key}.source" if "source" in data_cfg else key):
        datamodule.setup("fit")
    if len(datamodule.train_dataset) == 0:
        raise UserError(
            f"{key}: no training rows left (rows longer than {seq_len} tokens are skipped: "
            "raise the stage's seq_len or use shorter rows)"
        )
    return datamodule
