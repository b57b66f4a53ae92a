"""Batch sizes for Lightning's ThroughputMonitor (sequences and tokens of any stage's batch)."""

from __future__ import annotations

from typing import Mapping

import torch


def _ids(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return batch["input_ids"] if "input_ids" in batch else batch["chosen_input_ids"]


def batch_size(batch: Mapping[str, torch.Tensor]) -> int:
    """Sequences in a batch (for lightning's ThroughputMonitor)."""
    return _ids(batch).shape[0]


def batch_tokens(batch: Mapping[str, torch.Tensor]) -> int:
    """Tokens in a batch, padding included (ThroughputMonitor's items, logged as items_per_sec = tokens/s)."""
    return _ids(batch).numel()
