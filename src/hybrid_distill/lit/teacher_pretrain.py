"""Next-token training: the tiny Llama teacher from scratch (stage `pretrain_teacher`), plain supervised fine-tuning
of the teacher alone (stage `sft_teacher`, the baseline a distillation step's speed is compared with), and the
architectures of the `scratch` stage (any hybrid pattern), which log their held-out perplexity under `val/ppl`."""

from __future__ import annotations

import torch
from torchmetrics.text import Perplexity
from transformers import LlamaForCausalLM

from .. import losses
from ..models.hybrid import final_hidden_states
from .base import StageModule
from .flops import training_flops_per_token
from .optim import configure_adamw, total_grad_norm
from .settings import OptimSettings


class TeacherPretrainModule(StageModule):
    def __init__(
        self,
        model: LlamaForCausalLM,
        optim: OptimSettings,
        max_steps: int,
        *,  # by name: a positional metric name once landed in loss_token_chunk
        loss_token_chunk: int | None = None,  # CE fused with the LM head over this many tokens (losses/fused.py)
        ppl_name: str = "val/teacher_ppl",
    ):
        super().__init__()
        self.model = model
        self.ppl_name = ppl_name
        self.optim = optim
        self.max_steps = max_steps
        self.loss_token_chunk = loss_token_chunk
        self.val_ppl = Perplexity(ignore_index=-100)
        self.flops_per_batch: int | None = None  # of the last training step, for MFUMonitor
        self._flops_per_token: dict[int, int] = {}  # by sequence length

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        B, T = batch["input_ids"].shape
        if T not in self._flops_per_token:
            self._flops_per_token[T] = training_flops_per_token(self.model, T)
        self.flops_per_batch = B * T * self._flops_per_token[T]
        loss = self._fused_ce(batch) if self.loss_token_chunk else self._ce(batch)
        self.log("train/ce", loss, prog_bar=True)
        return loss

    def _ce(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.model(input_ids=batch["input_ids"]).logits  # (B, T, V)
        logits, targets, _ = losses.next_token_targets(logits, batch["labels"])
        return losses.cross_entropy(logits, targets)

    def _fused_ce(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        targets = batch["labels"][:, 1:]  # (B, T-1): position t predicts token t + 1
        rows = (targets != losses.IGNORE_INDEX).nonzero(as_tuple=True)  # the N counted positions
        hidden = final_hidden_states(self.model, batch["input_ids"])[:, :-1][rows]  # (N, d)
        head = self.model.get_output_embeddings().weight  # (V, d)
        weights = losses.FusedLossWeights(divergence_weight=0.0, ce_weight=1.0)
        return losses.fused_distill_loss(
            hidden, head, None, None, targets[rows], weights, token_chunk=self.loss_token_chunk
        ).loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits, targets, _ = losses.next_token_targets(self.model(input_ids=batch["input_ids"]).logits, batch["labels"])
        self.val_ppl.update(logits.float(), targets)
        self.log(self.ppl_name, self.val_ppl, prog_bar=True)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.log("train/grad_norm", total_grad_norm(self.model.parameters()))

    def configure_optimizers(self) -> dict:
        return configure_adamw(self.model.parameters(), self.optim, self.max_steps)
