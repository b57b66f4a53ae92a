"""The `speed` switches applied to the models a stage trains or runs frozen: the teacher's HF attention kernel and
dtype, activation checkpointing and torch.compile of the decoder blocks. None of them changes what a step computes
(each has a CPU parity test: tests/test_lit_speed.py); the fused loss is the other switch (lit/distill.py,
losses/fused.py).

"Blocks" are the modules that are `transformers.modeling_layers.GradientCheckpointingLayer`s: HF's decoder layers
(the teacher's `LlamaDecoderLayer`) and the student's `HybridBlock`, so one rule serves both models.
"""

from __future__ import annotations

from functools import partial

from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.modeling_layers import GradientCheckpointingLayer

from ..models.teacher import DTYPES
from .settings import SpeedSettings


def blocks(model: nn.Module) -> list[GradientCheckpointingLayer]:
    """The decoder blocks of a HF model or of the hybrid student, in order."""
    found = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no decoder blocks (GradientCheckpointingLayer modules)")
    return found


def enable_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each block's activations in the backward instead of keeping them (torch.utils.checkpoint,
    use_reentrant=False: gradients of parameters and of inputs that do not require grad flow as usual). Active in
    training mode with gradients on; evaluation and generation run the blocks as they are."""
    for block in blocks(model):
        block.gradient_checkpointing = True
        block._gradient_checkpointing_func = partial(checkpoint, use_reentrant=False)


def compile_model(model: nn.Module, how: str, decoder: nn.Module | None = None) -> None:
    """torch.compile in place (nn.Module.compile: parameter names and checkpoints stay as they are).
    how="blocks": each block on its own (short compiles, one graph per block kind and shape; the mixers' custom
    kernels stay opaque); how="model": `decoder` (default: the model itself) as one graph."""
    targets = blocks(model) if how == "blocks" else [decoder if decoder is not None else model]
    for module in targets:
        module.compile()


def prepare_trained(model: nn.Module, speed: SpeedSettings) -> nn.Module:
    """The model a stage trains: activation checkpointing, then compile (which traces the checkpointed blocks)."""
    if speed.activation_checkpointing:
        enable_activation_checkpointing(model)
    if speed.compile:
        compile_model(model, speed.compile)
    return model


def prepare_teacher_attention(teacher: nn.Module, speed: SpeedSettings) -> nn.Module:
    """The HF model's attention kernel: sdpa (PyTorch's flash / memory-efficient kernels), eager or
    flash_attention_2 (the flash-attn package). Same function, other kernels."""
    teacher.set_attn_implementation(speed.teacher_attention)
    return teacher


def prepare_frozen_teacher(teacher: nn.Module, speed: SpeedSettings) -> nn.Module:
    """The frozen teacher of a distillation: its attention kernel, its dtype (bfloat16: its forward runs in bf16
    whatever the student's precision, half the weight memory and no per-step cast of fp32 weights under autocast)
    and compile (decoder only: the fused loss applies the LM head itself)."""
    prepare_teacher_attention(teacher, speed)
    if speed.teacher_dtype is not None:
        teacher.to(DTYPES[speed.teacher_dtype])
    if speed.compile:
        compile_model(teacher, speed.compile, decoder=teacher.get_decoder())
    return teacher
