"""Typed settings a stage hands its LightningModule, each built once from its config node. Their fields and defaults
are the config groups' schemas (config_schema.py: OptimFields, DistillLossFields, DPOLossFields, SpeedFields), so a
default is written once; the classes here add the checks that need torch or transformers (choices of the loss
registry, the teacher dtypes, flash-attn's availability). The optimiser's betas and weight decay default there too,
because a teacher pretrained on the way has only a recipe (lr, warmup) in its model preset."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

from omegaconf import DictConfig, OmegaConf

from transformers.utils import is_flash_attn_2_available

from ..config_schema import DistillLossFields, DPOLossFields, OptimFields, SpeedFields
from ..errors import UserError
from ..losses import DIVERGENCES, DPO_LOSS_TYPES
from ..models.teacher import DTYPES

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
class OptimSettings(OptimFields):
    """AdamW on the trainable parameters, linear warmup then cosine decay (stage.* or model.recipe.<stage>.*)."""

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))  # a YAML list


@dataclass(frozen=True)
class DistillLoss(DistillLossFields):
    """divergence_weight * divergence(teacher, student) + ce_weight * CE(labels), per counted token (loss=kl, ...)."""

    def __post_init__(self):
        if self.divergence not in DIVERGENCES:
            raise UserError(f"loss.divergence={self.divergence!r}; choose one of {', '.join(DIVERGENCES)}")


TEACHER_ATTENTION = ("sdpa", "eager", "flash_attention_2")
COMPILE = (False, "blocks", "model")


@dataclass(frozen=True)
class SpeedSettings(SpeedFields):
    """The `speed` group: how fast a step runs, never what it computes (SpeedFields says what each switch does). Its
    defaults are the plain path (speed=default)."""

    def __post_init__(self):
        chunk = self.loss_token_chunk
        if chunk is not None and (not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1):
            raise UserError(f"speed.loss_token_chunk={self.loss_token_chunk!r}: give a number of rows >= 1, or null")
        if self.teacher_dtype not in (None, *DTYPES):
            raise UserError(f"speed.teacher_dtype={self.teacher_dtype!r}; choose null or one of {', '.join(DTYPES)}")
        if self.teacher_attention not in TEACHER_ATTENTION:
            raise UserError(
                f"speed.teacher_attention={self.teacher_attention!r}; choose one of {', '.join(TEACHER_ATTENTION)}"
            )
        if self.teacher_attention == "flash_attention_2" and not is_flash_attn_2_available():
            raise UserError(
                "speed.teacher_attention=flash_attention_2 needs the flash-attn package on a CUDA machine "
                "(pip install flash-attn --no-build-isolation); sdpa uses PyTorch's own flash kernel"
            )
        if self.compile not in COMPILE:
            raise UserError(f"speed.compile={self.compile!r}; choose false, blocks or model")

    def check_loss(self, loss: DistillLoss) -> None:
        """The fused loss computes forward KL + CE only, from the full vocabulary."""
        if self.loss_token_chunk is None:
            return
        if loss.divergence != "kl" and loss.divergence_weight > 0:
            raise UserError(
                f"speed.loss_token_chunk works with loss.divergence=kl only, not {loss.divergence!r}; "
                "set speed.loss_token_chunk=null"
            )
        if loss.vocab_chunk is not None:
            raise UserError(
                "speed.loss_token_chunk and loss.vocab_chunk are two ways to bound the loss's memory: "
                "set loss.vocab_chunk=null (the fused loss never builds the full logits)"
            )


@dataclass(frozen=True)
class DPOLoss(DPOLossFields):
    """DPO / IPO on (chosen, rejected) against a frozen reference, plus ce_weight * CE on the chosen response."""

    def __post_init__(self):
        if self.loss_type not in DPO_LOSS_TYPES:
            raise UserError(f"loss.loss_type={self.loss_type!r}; choose one of {', '.join(DPO_LOSS_TYPES)}")
