"""Optimiser and schedule shared by every stage: AdamW on trainable parameters, warmup then cosine decay."""

from __future__ import annotations

from typing import Iterable

import torch
from transformers import get_cosine_schedule_with_warmup

from .settings import OptimSettings


def configure_adamw(params: Iterable[torch.nn.Parameter], optim: OptimSettings, max_steps: int) -> dict:
    """Lightning's configure_optimizers return value: AdamW and its warmup-cosine schedule, stepped per step."""
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("no trainable parameters: check student.trainable")
    optimizer = torch.optim.AdamW(
        trainable,
        lr=optim.lr,
        betas=optim.betas,
        weight_decay=optim.weight_decay,
    )
    scheduler = get_cosine_schedule_with_warmup(
        optimizer,
        num_warmup_steps=optim.warmup_steps,
        num_training_steps=max(int(max_steps), 1),
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def total_grad_norm(params: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """L2 norm over all gradients (before clipping), logged as train/grad_norm."""
    grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return torch.stack(grads).norm() if grads else torch.tensor(0.0)
