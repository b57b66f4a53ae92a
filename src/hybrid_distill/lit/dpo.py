"""Stage `dpo`: direct preference optimisation of the student; the frozen reference is the stage-2 student."""

from __future__ import annotations

import copy
import torch
from torchmetrics import MeanMetric

from .. import losses
from ..models.teacher import freeze
from .base import StageModule
from .optim import configure_adamw, total_grad_norm
from .settings import DPOLoss, OptimSettings


class DPOModule(StageModule):
    frozen = "reference"  # the previous stage's student: reloaded from there, not stored twice

    def __init__(
        self,
        policy: torch.nn.Module,
        loss: DPOLoss,
        optim: OptimSettings,
        max_steps: int,
        reference: torch.nn.Module | None = None,
    ):
        super().__init__()
        self.policy = policy
        # the reference starts as a copy of the policy (the distilled student) and never moves
        self.reference = freeze(reference if reference is not None else copy.deepcopy(policy))
        self.loss = loss
        self.optim = optim
        self.max_steps = max_steps
        self.strict_loading = False
        self.val_margin = MeanMetric()
        self.val_accuracy = MeanMetric()

    def _logps(self, model: torch.nn.Module, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Sequence log-prob of the labelled (response) tokens: (B, T), (B, T) -> (B,)."""
        logits, shifted = losses.shift_for_next_token(model(ids).logits, labels)
        return losses.sequence_logprobs(logits, shifted, average=self.loss.loss_type == "ipo")

    def _step(self, batch: dict[str, torch.Tensor]):
        pc = self._logps(self.policy, batch["chosen_input_ids"], batch["chosen_labels"])  # (B,)
        pr = self._logps(self.policy, batch["rejected_input_ids"], batch["rejected_labels"])  # (B,)
        with torch.no_grad():
            rc = self._logps(self.reference, batch["chosen_input_ids"], batch["chosen_labels"])
            rr = self._logps(self.reference, batch["rejected_input_ids"], batch["rejected_labels"])
        loss, chosen_rewards, rejected_rewards = losses.dpo_loss(
            pc,
            pr,
            rc,
            rr,
            beta=self.loss.dpo_beta,
            label_smoothing=self.loss.label_smoothing,
            loss_type=self.loss.loss_type,
        )
        return loss, chosen_rewards, rejected_rewards, pc - pr

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, chosen, rejected, _ = self._step(batch)
        total = loss
        if self.loss.ce_weight > 0:
            logits, labels = losses.shift_for_next_token(
                self.policy(batch["chosen_input_ids"]).logits, batch["chosen_labels"]
            )
            total = total + self.loss.ce_weight * losses.cross_entropy(logits, labels)
        self.log_dict(
            {
                "train/dpo_loss": loss,
                "train/loss": total,
                "train/rewards_chosen": chosen.mean(),
                "train/rewards_rejected": rejected.mean(),
                "train/reward_margin": (chosen - rejected).mean(),
                "train/reward_accuracy": (chosen > rejected).float().mean(),
            },
            prog_bar=True,
        )
        return total

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        _, chosen, rejected, logp_margin = self._step(batch)
        self.val_margin.update(logp_margin)
        self.val_accuracy.update((chosen > rejected).float())
        self.log_dict({"val/logp_margin": self.val_margin, "val/reward_accuracy": self.val_accuracy}, prog_bar=True)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.log("train/grad_norm", total_grad_norm(self.policy.parameters()))

    def configure_optimizers(self) -> dict:
        return configure_adamw(self.policy.parameters(), self.optim, self.max_steps)
