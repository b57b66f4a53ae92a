"""Next-token alignment of logits and labels, cross-entropy and sequence log-probs."""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor

from .common import IGNORE_INDEX, Index, shape_of, token_mean, upcast


def shift_for_next_token(logits: Tensor, labels_or_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Pair the logits at position t with the label (or mask) at t + 1.

    logits: (B, T, V) from a causal LM; labels_or_mask: (B, T) aligned with the input ids
    (e.g. HF ``labels`` with -100 on prompt and padding, or a response mask).
    Returns (logits[:, :-1] (B, T-1, V), labels_or_mask[:, 1:] (B, T-1)), views, no copy. The shifted
    labels feed :func:`cross_entropy` / :func:`sequence_logprobs`, and ``shifted_labels != -100`` is
    the mask for the divergences (apply the same ``[:, :-1]`` to the teacher's logits).
    """
    if logits.dim() != 3 or labels_or_mask.shape != logits.shape[:2]:
        raise ValueError(
            f"expected logits (B, T, V) and labels/mask (B, T), got logits {shape_of(logits)} "
            f"and labels/mask {shape_of(labels_or_mask)}"
        )
    return logits[:, :-1], labels_or_mask[:, 1:]


def next_token_targets(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Align logits (B, T, V) at position t with the label at t + 1.

    Returns (logits (B, T-1, V), targets (B, T-1), mask (B, T-1) bool of positions that count).
    """
    logits, targets = shift_for_next_token(logits, labels)
    return logits, targets, targets != IGNORE_INDEX


def _target_logprobs(logits: Tensor, labels: Tensor, ignore_index: int) -> tuple[Index, Tensor]:
    """Log-prob of each non-ignored label: (..., V), (...) -> (indices of those positions, (N,) float32)."""
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels {shape_of(labels)} must have the logits' leading shape "
            f"{tuple(logits.shape[:-1])} (logits {shape_of(logits)}); shift first with "
            f"shift_for_next_token if they are aligned with the input ids"
        )
    rows = (labels != ignore_index).nonzero(as_tuple=True)
    return rows, -F.cross_entropy(upcast(logits[rows]), labels[rows], reduction="none")


def cross_entropy(logits: Tensor, labels: Tensor, *, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Mean next-token cross-entropy over the labels that are not ``ignore_index``.

    logits: (..., V); labels: (...) ALREADY ALIGNED with the logits (see :func:`shift_for_next_token`).
    Returns a float32 scalar, 0 when every label is ignored.
    """
    _, token_logps = _target_logprobs(logits, labels, ignore_index)
    return -token_mean(token_logps)


def sequence_logprobs(
    logits: Tensor, labels: Tensor, *, average: bool = False, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """Log-probability of each sequence's labelled tokens: (B, T, V), (B, T) aligned -> (B,) float32.

    Sums log p(label) over the positions whose label is not ``ignore_index``; ``average=True`` divides
    by their count instead (as TRL does for IPO). A sequence with no labelled token gives 0.
    """
    if logits.dim() != 3:
        raise ValueError(f"sequence_logprobs expects logits (B, T, V), got {shape_of(logits)}")
    rows, token_logps = _target_logprobs(logits, labels, ignore_index)
    batch = rows[0]  # (N,) sequence of each labelled token
    total = token_logps.new_zeros(logits.shape[0]).index_add(0, batch, token_logps)  # (B,)
    if not average:
        return total
    return total / torch.bincount(batch, minlength=logits.shape[0]).clamp(min=1)
