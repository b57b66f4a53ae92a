"""Token-level helpers shared by the LightningModules and the throughput callback."""

from __future__ import annotations

from typing import Mapping

import torch

from .. import losses


def next_token_targets(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Align logits (B, T, V) at position t with the label at t + 1.

    Returns (logits (B, T-1, V), targets (B, T-1), mask (B, T-1) bool of positions that count).
    """
    logits, targets = losses.shift_for_next_token(logits, labels)
    return logits, targets, targets != losses.IGNORE_INDEX


def _ids(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return batch["input_ids"] if "input_ids" in batch else batch["chosen_input_ids"]


def batch_size(batch: Mapping[str, torch.Tensor]) -> int:
    """Sequences in a batch (for lightning's ThroughputMonitor)."""
    return _ids(batch).shape[0]


def batch_tokens(batch: Mapping[str, torch.Tensor]) -> int:
    """Tokens in a batch, padding included (ThroughputMonitor's items, logged as items_per_sec = tokens/s)."""
    return _ids(batch).numel()
