"""Stage `distill`: a frozen teacher supervises the hybrid student,
loss = divergence_weight * divergence + ce_weight * CE.

The teacher is a submodule (so device placement and FSDP sharding apply to it) but it is kept in eval
mode, never receives gradients and is left out of checkpoints: it is reloaded from its own path.

With speed.loss_token_chunk the training step takes both models' final hidden states and computes the loss fused with
their LM heads (losses/fused.py): same value and gradients, no (B, T, V) logits. Validation keeps the full logits
(its metrics are perplexities and KL over the whole vocabulary, without gradients).
"""

from __future__ import annotations

import torch

from .. import losses
from ..eval.quality import HeldoutMetrics
from ..models.hybrid import final_hidden_states
from ..models.teacher import freeze
from .base import StageModule
from .flops import distill_flops_per_token
from .optim import configure_adamw, total_grad_norm
from .settings import DistillLoss, OptimSettings, SpeedSettings


class DistillModule(StageModule):
    frozen = "teacher"

    def __init__(
        self,
        teacher: torch.nn.Module,
        student: torch.nn.Module,
        loss: DistillLoss,
        optim: OptimSettings,
        max_steps: int,
        speed: SpeedSettings | None = None,  # None: the plain path
    ):
        super().__init__()
        speed = speed or SpeedSettings()
        speed.check_loss(loss)
        self.teacher = freeze(teacher)
        self.student = student
        self.loss = loss
        self.speed = speed
        self.optim = optim
        self.max_steps = max_steps
        self.strict_loading = False  # checkpoints hold no teacher weights
        self.val_metrics = HeldoutMetrics()  # the same metrics as python eval.py's quality section
        self.flops_per_batch: int | None = None  # of the last training step: MFU for Lightning's/our monitors
        self._flops_per_token: dict[int, int] = {}  # by sequence length

    # --- steps
    def _logits(self, batch: dict[str, torch.Tensor], with_teacher: bool):
        ids = batch["input_ids"]  # (B, T)
        student_logits = self.student(ids).logits  # (B, T, V)
        teacher_logits = None
        if with_teacher:
            with torch.no_grad():
                teacher_logits = self.teacher(input_ids=ids).logits  # (B, T, V)
        return student_logits, teacher_logits

    def _divergence(self, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = self.loss
        return losses.divergence(
            s.divergence,
            student,
            teacher,
            mask,
            temperature=s.temperature,
            t2_scaling=s.t2_scaling,
            jsd_beta=s.jsd_beta,
            vocab_chunk=s.vocab_chunk,
        )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        divergence_weight, ce_weight = self.loss.divergence_weight, self.loss.ce_weight
        B, T = batch["input_ids"].shape
        if T not in self._flops_per_token:
            self._flops_per_token[T] = distill_flops_per_token(self.teacher, self.student, T, divergence_weight > 0)
        self.flops_per_batch = B * T * self._flops_per_token[T]
        if self.speed.loss_token_chunk:
            return self._fused_training_step(batch)
        student_logits, teacher_logits = self._logits(batch, with_teacher=divergence_weight > 0)
        student_logits, targets, mask = losses.next_token_targets(student_logits, batch["labels"])
        loss = student_logits.new_zeros(())
        if divergence_weight > 0:
            div = self._divergence(student_logits, teacher_logits[:, :-1], mask)
            self.log("train/divergence", div, prog_bar=True)
            self.log("train/top1_agree", losses.top1_agreement(student_logits, teacher_logits[:, :-1], mask))
            loss = loss + divergence_weight * div
        if ce_weight > 0:
            ce = losses.cross_entropy(student_logits, targets)
            self.log("train/ce", ce, prog_bar=True)
            loss = loss + ce_weight * ce
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _fused_training_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The same loss from the final hidden states, fused with the LM heads (losses.fused_distill_loss)."""
        s, ids = self.loss, batch["input_ids"]  # (B, T)
        targets = batch["labels"][:, 1:]  # (B, T-1): position t predicts token t + 1
        rows = (targets != losses.IGNORE_INDEX).nonzero(as_tuple=True)  # the N counted positions
        student_hidden = final_hidden_states(self.student, ids)[:, :-1][rows]  # (N, d)
        teacher_hidden = teacher_head = None
        if s.divergence_weight > 0:
            with torch.no_grad():
                teacher_hidden = final_hidden_states(self.teacher, ids)[:, :-1][rows]  # (N, d)
            teacher_head = self.teacher.get_output_embeddings().weight  # (V, d)
        weights = losses.FusedLossWeights(s.divergence_weight, s.ce_weight, s.temperature, s.t2_scaling)
        out = losses.fused_distill_loss(
            student_hidden,
            self.student.lm_head.weight,
            teacher_hidden,
            teacher_head,
            targets[rows],
            weights,
            token_chunk=self.speed.loss_token_chunk,
        )
        if s.divergence_weight > 0:
            self.log("train/divergence", out.divergence, prog_bar=True)
            self.log("train/top1_agree", out.top1_agree)
        if s.ce_weight > 0:
            self.log("train/ce", out.ce, prog_bar=True)
        self.log("train/loss", out.loss, prog_bar=True)
        return out.loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        student_logits, teacher_logits = self._logits(batch, with_teacher=True)
        self.val_metrics.update(student_logits, teacher_logits, batch["labels"])
        self.log_dict({f"val/{name}": metric for name, metric in self.val_metrics.metrics().items()}, prog_bar=True)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.log("train/grad_norm", total_grad_norm(self.student.parameters()))

    def configure_optimizers(self) -> dict:
        return configure_adamw(self.student.parameters(), self.optim, self.max_steps)
