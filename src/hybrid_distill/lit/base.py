"""What every stage's LightningModule shares: an optional frozen submodule (the distillation teacher or the
DPO reference) that stays in eval mode and is left out of checkpoints, gradient clipping that also works under
FSDP, and the metrics of the fit loop's last validation."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy


class StageModule(L.LightningModule):
    # attribute name of the frozen submodule, if any; it is reloaded from its own source, never checkpointed
    frozen: str | None = None
    # the fit loop's last validation: (optimizer steps taken, every metric then); stages.common.fit_and_validate
    # reuses it when it measured the final weights rather than validating them a second time
    last_fit_validation: tuple[int, dict[str, float]] | None = None

    def on_validation_end(self) -> None:
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items()}
            self.last_fit_validation = (self.trainer.global_step, metrics)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            getattr(self, self.frozen).eval()  # whatever Lightning does to the module's mode
        return self

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.frozen:
            state = checkpoint["state_dict"]
            for key in [k for k in state if k.startswith(self.frozen + ".")]:
                del state[key]

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        if gradient_clip_val and isinstance(self.trainer.strategy, FSDPStrategy):
            # Lightning's FSDP precision plugin refuses clipping by norm; the FSDP root computes the global norm
            self._fsdp_root().clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def _fsdp_root(self):
        """The FullyShardedDataParallel instance Lightning wrapped this module in."""
        from torch.distributed.fsdp import FullyShardedDataParallel

        root = self.trainer.strategy.model
        if not isinstance(root, FullyShardedDataParallel):
            raise RuntimeError(
                f"FSDP did not wrap the module (strategy.model is a {type(root).__name__}); a module "
                "must not have been through another FSDP trainer before fit()"
            )
        return root
