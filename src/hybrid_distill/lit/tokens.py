"""Count the tokens a stage trained on (padding excluded), so that studies can hold token budgets equal.

Lightning's ThroughputMonitor counts padded tokens and restarts its count on resume; this count is kept in
checkpoints, so a resumed run continues it. Logged as `train/tokens_seen` (this process's batches).
"""

from __future__ import annotations

from typing import Any, Mapping

import lightning as L
import torch


class TokenCounter(L.Callback):
    def __init__(self):
        self.tokens_seen = 0
        self._pending: torch.Tensor | None = None  # summed on the device, read once per logging step

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: dict, batch_idx: int
    ) -> None:
        if not isinstance(batch, Mapping):  # not a batch of tokens (e.g. a toy (x, y) pair): nothing to count
            return
        mask = batch.get("attention_mask")
        if mask is None:  # preference batches: both sides trained on
            mask = torch.cat([batch["chosen_attention_mask"], batch["rejected_attention_mask"]])
        tokens = mask.sum()
        self._pending = tokens if self._pending is None else self._pending + tokens
        if trainer.global_step % trainer.log_every_n_steps == 0 or trainer.global_step >= trainer.max_steps:
            self.flush()
            module.log("train/tokens_seen", float(self.tokens_seen))

    def flush(self) -> int:
        if self._pending is not None:
            self.tokens_seen += int(self._pending)
            self._pending = None
        return self.tokens_seen

    def state_dict(self) -> dict[str, int]:
        return {"tokens_seen": self.flush()}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.tokens_seen, self._pending = int(state_dict["tokens_seen"]), None


def tokens_seen(trainer: L.Trainer) -> int | None:
    """The TokenCounter's total for a finished fit, or None when the trainer has none."""
    counters = [cb for cb in trainer.callbacks if isinstance(cb, TokenCounter)]
    return counters[0].flush() if counters else None
