"""What every loss shares: the ignore index, counted-position gathering, float32 log-probs, the per-token mean."""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor


IGNORE_INDEX = -100
DEFAULT_VOCAB_CHUNK = 8192

Index = tuple[Tensor, ...]  # one index tensor per leading dim, each (N,): the counted positions


def shape_of(x: Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def check_pair(student_logits: Tensor, teacher_logits: Tensor) -> None:
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student_logits {shape_of(student_logits)} and teacher_logits "
            f"{shape_of(teacher_logits)} must have the same shape (..., V)"
        )
    if student_logits.dim() < 2 or student_logits.shape[-1] == 0:
        raise ValueError(f"logits must be (..., V) with a leading dim and V >= 1, got {shape_of(student_logits)}")


def counted_rows(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None) -> Index:
    """Validate a (student, teacher, mask) triple and return the indices of the counted positions."""
    check_pair(student_logits, teacher_logits)
    leading = student_logits.shape[:-1]
    if mask is None:
        mask = torch.ones(leading, dtype=torch.bool, device=student_logits.device)
    elif mask.shape != leading:
        raise ValueError(
            f"mask {shape_of(mask)} must have the logits' leading shape {tuple(leading)} "
            f"(logits {shape_of(student_logits)})"
        )
    return mask.bool().nonzero(as_tuple=True)


def upcast(x: Tensor) -> Tensor:
    """bf16/fp16 -> float32; float32 and float64 unchanged (no copy)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def scaled(logits: Tensor, temperature: float) -> Tensor:
    """Upcast (see upcast) and divide by the temperature."""
    logits = upcast(logits)
    return logits if temperature == 1.0 else logits / temperature


def log_probs(logits: Tensor, temperature: float) -> Tensor:
    """(..., V) logits -> (..., V) float32 log-probabilities at temperature T."""
    return F.log_softmax(scaled(logits, temperature), dim=-1)


def kl_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) per row: (..., V), (..., V) log-probs -> (...)."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def token_mean(values: Tensor) -> Tensor:
    """(N,) per-token values -> () mean; 0 when N == 0."""
    return values.sum() / max(values.numel(), 1)


def t2(loss: Tensor, temperature: float, t2_scaling: bool) -> Tensor:
    return loss * temperature**2 if t2_scaling else loss
