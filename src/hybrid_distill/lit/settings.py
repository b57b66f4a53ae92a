"""Typed settings a stage hands its LightningModule, each built once from its config node. The loss settings have
no defaults here: conf/loss/ holds them (one place); the optimiser's betas and weight decay default here, because
a teacher pretrained on the way has only a recipe (lr, warmup) in its model preset."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

from omegaconf import DictConfig, OmegaConf

from ..errors import UserError
from ..losses import DIVERGENCES, DPO_LOSS_TYPES

T = TypeVar("T")


def from_config(cls: type[T], node: DictConfig | Mapping[str, Any], key: str) -> T:
    """`cls` from the fields present in config node `key` (other keys, such as `name`, are not settings); a required
    field that is missing is one UserError naming it."""
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    fields = dataclasses.fields(cls)
    missing = [
        f"{key}.{f.name}"
        for f in fields
        if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise UserError(f"{key}: missing {', '.join(missing)}")
    return cls(**{f.name: values[f.name] for f in fields if f.name in values})


@dataclass(frozen=True)
class OptimSettings:
    """AdamW on the trainable parameters, linear warmup then cosine decay (stage.* or model.recipe.<stage>.*)."""

    lr: float
    warmup_steps: int = 0
    betas: tuple[float, float] = (0.9, 0.98)  # MambaInLlama's
    weight_decay: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))  # a YAML list


@dataclass(frozen=True)
class DistillLoss:
    """divergence_weight * divergence(teacher, student) + ce_weight * CE(labels), per counted token (loss=kl, ...)."""

    divergence: str  # kl | rkl | jsd | kl_chunked (losses.DIVERGENCES)
    divergence_weight: float
    ce_weight: float
    temperature: float  # divides both logits before the softmax
    t2_scaling: bool  # multiply the divergence by temperature**2 (Hinton et al.); off = TRL's GKD
    jsd_beta: float  # only divergence=jsd reads it
    vocab_chunk: int | None  # a chunk size: the vocabulary-chunked forward KL (same value, less memory)

    def __post_init__(self):
        if self.divergence not in DIVERGENCES:
            raise UserError(f"loss.divergence={self.divergence!r}; choose one of {', '.join(DIVERGENCES)}")


@dataclass(frozen=True)
class DPOLoss:
    """DPO / IPO on (chosen, rejected) against a frozen reference, plus ce_weight * CE on the chosen response."""

    dpo_beta: float
    loss_type: str  # sigmoid (DPO) | ipo
    label_smoothing: float
    ce_weight: float

    def __post_init__(self):
        if self.loss_type not in DPO_LOSS_TYPES:
            raise UserError(f"loss.loss_type={self.loss_type!r}; choose one of {', '.join(DPO_LOSS_TYPES)}")
