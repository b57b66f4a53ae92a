"""Teacher-student metrics on logits that are not losses: KL per position, top-1 agreement."""

from __future__ import annotations


import torch
from torch import Tensor

from .common import check_pair, check_temperature, counted_rows, kl_rows, log_probs, token_mean


def token_kl(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0) -> Tensor:
    """Forward KL(p_teacher || p_student) at every position: (..., V), (..., V) -> (...) float32.

    Unreduced and unmasked, for metrics such as KL by position; use :func:`forward_kl` as a loss.
    """
    check_temperature(temperature)
    check_pair(student_logits, teacher_logits)
    return kl_rows(log_probs(teacher_logits, temperature), log_probs(student_logits, temperature))


@torch.no_grad()
def top1_agreement(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """Fraction of counted positions where student and teacher argmax agree (symmetric in its two logits).

    student_logits, teacher_logits: (..., V); mask: (...) or None. Returns a float32 scalar in [0, 1],
    0 when no position counts.
    """
    rows = counted_rows(student_logits, teacher_logits, mask)
    agree = teacher_logits.argmax(-1)[rows] == student_logits.argmax(-1)[rows]  # (N,)
    return token_mean(agree.float())
