"""Training progress for a person: Rich's live bar in a terminal, and one plain line every so often when stdout is a
file (nohup, submitit, Slurm logs), where a live bar prints nothing until its loop ends."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress import ProgressBar
from lightning.pytorch.utilities import rank_zero_only

from .metrics import batch_tokens


def progress_bar(style: str = "auto", every_s: float = 30.0) -> ProgressBar:
    """The `callbacks.progress_bar` entry. style: auto (a live bar on a terminal, lines otherwise) | rich | lines."""
    if style not in ("auto", "rich", "lines"):
        raise ValueError(f"callbacks.progress_bar.style={style!r}; choose auto, rich or lines")
    if style == "rich" or (style == "auto" and sys.stdout.isatty()):
        return StepsRichProgressBar()
    return LineProgress(every_s)


class StepsRichProgressBar(RichProgressBar):
    """Rich's bar, described by stage and step budget: our stages stop at max_steps with max_epochs=-1, for which
    Lightning's description reads "Epoch 0/-2"."""

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        return f"{Path(trainer.default_root_dir).name} epoch {current_epoch} (max {trainer.max_steps} steps)"


def _fmt_eta(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class LineProgress(ProgressBar):
    """Prints `<stage> step S/N | loss L | tokens/s T | ETA h:mm:ss` at the first step, then at most every `every_s`
    seconds, and at the last step; after each validation, the validation metrics on one line. Tokens count padding,
    as Lightning's ThroughputMonitor does."""

    def __init__(self, every_s: float = 30.0):
        super().__init__()
        self.every_s = every_s
        self._enabled = True
        self._start = self._last = 0.0
        self._start_step = 0
        self._tokens = 0  # since the last printed line
        self._val_start = 0.0
        self._last_validation: tuple[int, dict] | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @staticmethod
    def _stage(trainer: L.Trainer) -> str:
        return Path(trainer.default_root_dir).name  # runtime.build_trainer: <run dir>/<stage>

    @rank_zero_only
    def _say(self, line: str) -> None:
        if self._enabled:
            print(line, flush=True)

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = self._last = time.perf_counter()
        self._start_step, self._tokens = trainer.global_step, 0

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._tokens += batch_tokens(batch)
        step, total, now = trainer.global_step, trainer.max_steps, time.perf_counter()
        if not (step == self._start_step + 1 or step >= total or now - self._last >= self.every_s):
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        eta = (now - self._start) / max(step - self._start_step, 1) * max(total - step, 0)
        parts = [f"{self._stage(trainer)} step {step}/{total}"]
        if loss is not None:
            parts.append(f"loss {float(loss):.4g}")
        parts += [f"tokens/s {self._tokens / max(now - self._last, 1e-9):,.0f}", f"ETA {_fmt_eta(eta)}"]
        self._say(" | ".join(parts))
        self._last, self._tokens = now, 0

    def on_validation_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._last += time.perf_counter() - self._val_start  # tokens/s counts training time only
        if trainer.sanity_checking:
            return
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if values and (trainer.global_step, values) != self._last_validation:  # fit's own, then the stage's again
            self._last_validation = (trainer.global_step, values)
            self._say(
                f"{self._stage(trainer)} validation at step {trainer.global_step} | "
                + " | ".join(f"{k} {v:.4g}" for k, v in sorted(values.items()))
            )
