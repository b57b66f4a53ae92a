"""Held-out quality: student (and teacher) perplexity, and the student's agreement with the teacher (top-1, KL).
`HeldoutMetrics` accumulates them; the distill stage validates with it and `heldout_quality` runs it over the
validation split of a run's own data config, so both report the same numbers."""

from __future__ import annotations

from typing import Iterable

import torch
from torchmetrics import MeanMetric, Metric
from torchmetrics.text import Perplexity

from .. import losses


class HeldoutMetrics(torch.nn.Module):
    """student_ppl, and with a teacher teacher_ppl, kl (forward KL per counted token) and top1_agree. A module of
    torchmetrics metrics, so Lightning can log, sync and reset them (`self.log_dict(metrics.metrics())`)."""

    def __init__(self, with_teacher: bool = True):
        super().__init__()
        self.student_ppl = Perplexity(ignore_index=losses.IGNORE_INDEX)
        self.with_teacher = with_teacher
        if with_teacher:
            self.teacher_ppl = Perplexity(ignore_index=losses.IGNORE_INDEX)
            self.kl = MeanMetric()
            self.top1_agree = MeanMetric()

    def update(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor) -> int:
        """Logits (B, T, V) and labels (B, T) aligned with the input ids; returns the counted target tokens."""
        student_logits, targets, mask = losses.next_token_targets(student_logits, labels)  # (B, T-1, V), (B, T-1)
        n = int(mask.sum())
        self.student_ppl.update(student_logits.float(), targets)
        if self.with_teacher:
            teacher_logits = teacher_logits[:, :-1]  # (B, T-1, V)
            self.teacher_ppl.update(teacher_logits.float(), targets)
            self.kl.update(losses.forward_kl(student_logits, teacher_logits, mask), weight=n)
            self.top1_agree.update(losses.top1_agreement(student_logits, teacher_logits, mask), weight=n)
        return n

    def metrics(self) -> dict[str, Metric]:
        names = ("student_ppl", "teacher_ppl", "kl", "top1_agree") if self.with_teacher else ("student_ppl",)
        return {name: getattr(self, name) for name in names}


@torch.no_grad()
def heldout_quality(
    student: torch.nn.Module, teacher: torch.nn.Module | None, batches: Iterable[dict], max_batches: int | None = None
) -> dict[str, float]:
    """HeldoutMetrics over `batches` (`input_ids`, `labels` (B, T) as the datamodules give them), computed;
    `tokens` = counted target tokens."""
    device = next(student.parameters()).device
    metrics = HeldoutMetrics(with_teacher=teacher is not None).to(device)
    tokens = 0
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)  # (B, T)
        teacher_logits = teacher(input_ids=ids).logits if teacher is not None else None
        tokens += metrics.update(student(ids).logits, teacher_logits, labels)
    if tokens == 0:
        raise ValueError("held-out data has no counted tokens (empty validation split?)")
    return {**{name: float(m.compute()) for name, m in metrics.metrics().items()}, "tokens": tokens}
