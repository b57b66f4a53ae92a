"""Held-out quality: student (and teacher) perplexity, and the student's agreement with the teacher (top-1, KL),
on the validation split of the run's own data config - the same metrics the distill stage validates with."""

from __future__ import annotations

from typing import Iterable

import torch
from torchmetrics import MeanMetric
from torchmetrics.text import Perplexity

from .. import losses
from ..data.tokenize import IGNORE_INDEX


@torch.no_grad()
def heldout_quality(student: torch.nn.Module, teacher: torch.nn.Module | None, batches: Iterable[dict],
                    max_batches: int | None = None) -> dict[str, float]:
    """student_ppl, and with a teacher also teacher_ppl, kl (forward KL per counted token) and top1_agree;
    `tokens` = counted target tokens. Batches: `input_ids`, `labels` (B, T) as the datamodules give them."""
    device = next(student.parameters()).device
    student_ppl = Perplexity(ignore_index=IGNORE_INDEX).to(device)
    teacher_ppl, kl, agree = Perplexity(ignore_index=IGNORE_INDEX).to(device), MeanMetric(), MeanMetric()
    tokens = 0
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)  # (B, T)
        student_logits, targets, mask = losses.next_token_targets(student(ids).logits.float(), labels)  # (B, T-1, V)
        student_ppl.update(student_logits, targets)
        n = int(mask.sum())
        tokens += n
        if teacher is not None:
            teacher_logits = teacher(input_ids=ids).logits[:, :-1].float()  # (B, T-1, V)
            teacher_ppl.update(teacher_logits, targets)
            kl.update(losses.forward_kl(student_logits, teacher_logits, mask).cpu(), weight=n)
            agree.update(losses.top1_agreement(teacher_logits, student_logits, mask).cpu(), weight=n)
    if tokens == 0:
        raise ValueError("held-out data has no counted tokens (empty validation split?)")
    out = {"student_ppl": float(student_ppl.compute()), "tokens": tokens}
    if teacher is not None:
        out.update(teacher_ppl=float(teacher_ppl.compute()), kl=float(kl.compute()),
                   top1_agree=float(agree.compute()))
    return out
