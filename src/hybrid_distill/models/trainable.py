"""Which parameters train, and how many there are of each kind."""

from __future__ import annotations

import torch
from torch import nn

from .allocation import MAMBA

# mamba: only the Mamba mixers (everything copied from the teacher is frozen) - the paper's default;
# mamba_mlp: Mamba mixers and MLPs (the paper's "unfreeze the MLPs" option); all: everything.
TRAINABLE_SETS = ("mamba", "mamba_mlp", "all")


def set_trainable(model: nn.Module, which: str = "mamba") -> nn.Module:
    if which not in TRAINABLE_SETS:
        raise ValueError(f"set_trainable: which must be one of {', '.join(TRAINABLE_SETS)}; got {which!r}")
    model.requires_grad_(which == "all")
    if which != "all":
        for block in model.layers:
            if block.kind == MAMBA:
                block.mixer.requires_grad_(True)
            if which == "mamba_mlp" and block.mlp is not None:
                block.mlp.requires_grad_(True)
    return model


def float32_trainable(model: nn.Module) -> int:
    """Cast the parameters that train to float32, in place; frozen ones keep their dtype. Under bf16/fp16 mixed
    precision the optimiser's update (lr x step, often below 2^-8 of the weight) is lost when rounded to a 16-bit
    weight, so the weights that train must be float32 masters (autocast still runs the matmuls in 16 bits); a
    student built in a bf16 teacher's dtype would otherwise train bf16 weights. Returns how many were cast."""
    cast = 0
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
            cast += p.numel()
    return cast


def param_counts(model: nn.Module) -> dict[str, int]:
    """total / trainable parameter counts, and per kind: attention, mamba (mixers), mlp, other (embeddings, norms,
    LM head). Tied weights count once."""
    kind_of = {}
    for block in model.layers:
        for p in block.mixer.parameters():
            kind_of[id(p)] = "mamba" if block.kind == MAMBA else "attention"
        for p in block.mlp.parameters() if block.mlp is not None else ():
            kind_of[id(p)] = "mlp"
    counts = dict.fromkeys(("total", "trainable", "attention", "mamba", "mlp", "other"), 0)
    for p in model.parameters():
        counts["total"] += p.numel()
        counts["trainable"] += p.numel() if p.requires_grad else 0
        counts[kind_of.get(id(p), "other")] += p.numel()
    return counts
