"""Next-token training from scratch: the tiny Llama teacher (stage `pretrain_teacher`) and the architectures of the
`scratch` stage (any hybrid pattern), which log their held-out perplexity under `val/ppl` instead."""

from __future__ import annotations

import torch
from torchmetrics.text import Perplexity
from transformers import LlamaForCausalLM

from .. import losses
from .base import StageModule
from .optim import configure_adamw, total_grad_norm
from .settings import OptimSettings


class TeacherPretrainModule(StageModule):
    def __init__(
        self, model: LlamaForCausalLM, optim: OptimSettings, max_steps: int, ppl_name: str = "val/teacher_ppl"
    ):
        super().__init__()
        self.model = model
        self.ppl_name = ppl_name
        self.optim = optim
        self.max_steps = max_steps
        self.val_ppl = Perplexity(ignore_index=-100)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.model(input_ids=batch["input_ids"]).logits  # (B, T, V)
        logits, targets, _ = losses.next_token_targets(logits, batch["labels"])
        loss = losses.cross_entropy(logits, targets)
        self.log("train/ce", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits, targets, _ = losses.next_token_targets(self.model(input_ids=batch["input_ids"]).logits, batch["labels"])
        self.val_ppl.update(logits.float(), targets)
        self.log(self.ppl_name, self.val_ppl, prog_bar=True)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.log("train/grad_norm", total_grad_norm(self.model.parameters()))

    def configure_optimizers(self) -> dict:
        return configure_adamw(self.model.parameters(), self.optim, self.max_steps)
