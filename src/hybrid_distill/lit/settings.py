"""Typed settings a stage hands its LightningModule, each built once from its config node. The loss settings have
no defaults here: conf/loss/ holds them (one place); the optimiser's betas and weight decay default here, because
a teacher pretrained on the way has only a recipe (lr, warmup) in its model preset."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

from omegaconf import DictConfig, OmegaConf

from transformers.utils import is_flash_attn_2_available

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


TEACHER_ATTENTION = ("sdpa", "eager", "flash_attention_2")
COMPILE = (False, "blocks", "model")


@dataclass(frozen=True)
class SpeedSettings:
    """The `speed` group: how fast a step runs, never what it computes (conf/speed/default.yaml says what each does).
    The defaults here are the plain path; conf/speed/ names them again so that each is an override away."""

    loss_token_chunk: int | None = None  # rows per chunk of the loss fused with the LM heads (losses/fused.py)
    teacher_dtype: str | None = None  # bfloat16 | float32: the frozen teacher's weights and forward; None: model.dtype
    teacher_attention: str = "sdpa"  # the HF teacher's attn_implementation: sdpa | eager | flash_attention_2
    compile: bool | str = False  # torch.compile: false | blocks | model
    activation_checkpointing: bool = False  # recompute each trained block's activations in the backward

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
class DPOLoss:
    """DPO / IPO on (chosen, rejected) against a frozen reference, plus ce_weight * CE on the chosen response."""

    dpo_beta: float
    loss_type: str  # sigmoid (DPO) | ipo
    label_smoothing: float
    ce_weight: float

    def __post_init__(self):
        if self.loss_type not in DPO_LOSS_TYPES:
            raise UserError(f"loss.loss_type={self.loss_type!r}; choose one of {', '.join(DPO_LOSS_TYPES)}")
