"""Callbacks every training stage runs with: RNG state in checkpoints, checkpoint-and-stop on preemption signals,
and a guard against non-finite losses and gradients. (PreemptionDrill sends such a signal on purpose.)"""

from __future__ import annotations

import math
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.utilities import rank_zero_warn

from ..errors import Preempted, TrainingDiverged, UserError
from .checkpoints import last_checkpoint


class RNGStateCheckpoint(L.Callback):
    """Saves the global RNG states (torch, CUDA, numpy, random) in each checkpoint and restores them when training
    resumes, so that dropout or sampling continue as in the uninterrupted run. Validation inside fit runs on saved and
    restored RNG states: it never shifts training randomness (a resumed run skips the validation that was due when it
    was interrupted)."""

    def __init__(self):
        self._to_restore: dict | None = None
        self._before_validation: dict | None = None

    def state_dict(self) -> dict[str, Any]:
        states = _collect_rng_states()
        if "numpy" in states:  # plain lists, so that checkpoints load with torch.load(weights_only=True)
            name, keys, pos, has_gauss, cached = states["numpy"]
            states["numpy"] = (name, keys.tolist(), pos, has_gauss, cached)
        return states

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict  # applied when training starts: setup between here and there may draw

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._to_restore is not None:
            _set_rng_states(self._to_restore)
            self._to_restore = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._before_validation = _collect_rng_states()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._before_validation is not None:
            _set_rng_states(self._before_validation)
            self._before_validation = None


def _stage_dir(trainer: L.Trainer) -> Path:
    return Path(trainer.default_root_dir)


class PreemptionCheckpoint(L.Callback):
    """On one of `signals` (SIGTERM; SIGUSR1, Slurm's usual warning; SIGUSR2, submitit's; SIGINT, Ctrl-C: a second
    Ctrl-C interrupts at once, without a checkpoint), finish the current batch,
    save `<stage>/checkpoints/last.ckpt`, then stop: Preempted, which the command line turns into exit status 75.

    The handlers are installed for the training loop only (on_train_start, over Lightning's own, which would stop
    without a checkpoint) and only note the signal: saving inside a handler could interrupt an optimizer step. The
    checkpoint is saved at the end of the batch (where ModelCheckpoint saves too); Preempted is raised just after
    Lightning has logged that batch, before the next batch or a validation starts. All ranks agree on stopping at the
    same batch. A handler the process had before Lightning's (submitit's: USR2 requeues the job, then exits) runs
    after the save, on the ranks that got the signal."""

    def __init__(self, signals: list[str] = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT")):
        try:
            self.signals = [signal.Signals[name] for name in signals]
        except KeyError as err:
            raise UserError(f"callbacks.preemption.signals: unknown signal {err.args[0]!r}") from err
        self._received: signal.Signals | None = None
        self._saved: Path | None = None
        self._foreign: dict[signal.Signals, Any] = {}  # the process's handlers before Lightning registered its own
        self._replaced: dict[signal.Signals, Any] = {}  # the handlers ours replaced, put back when training ends

    def _note(self, signum: int, frame: Any) -> None:
        if self._received is not None and signum == signal.SIGINT:
            signal.default_int_handler(signum, frame)  # Ctrl-C again: stop now
        self._received = signal.Signals(signum)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._foreign = {sig: signal.getsignal(sig) for sig in self.signals}  # Lightning registers after setup

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._received, self._saved = None, None
        try:
            self._replaced = {sig: signal.signal(sig, self._note) for sig in self.signals}
        except ValueError:  # not the main thread (e.g. a notebook's worker): signals cannot be handled here
            self._replaced = {}

    def _restore_handlers(self) -> None:
        for sig, handler in self._replaced.items():
            signal.signal(sig, handler)
        self._replaced = {}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._save_if_signalled(trainer)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._stop_if_saved(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_saved(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save_if_signalled(trainer)  # a signal after the last batch: keep its training
        self._stop_if_saved(trainer)
        self._restore_handlers()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()

    def _save_if_signalled(self, trainer: L.Trainer) -> None:
        if self._saved is None and trainer.strategy.reduce_boolean_decision(self._received is not None, all=False):
            self._saved = last_checkpoint(_stage_dir(trainer))
            trainer.save_checkpoint(self._saved)

    def _stop_if_saved(self, trainer: L.Trainer) -> None:
        if self._saved is None:
            return
        self._restore_handlers()
        if self._received is None:  # another rank got the signal
            raise Preempted(f"another rank's signal at step {trainer.global_step}: saved {self._saved}")
        foreign = self._foreign.get(self._received)
        if callable(foreign) and foreign is not signal.default_int_handler:  # Python's own SIGINT: KeyboardInterrupt
            foreign(self._received, None)
        raise Preempted(f"{self._received.name} at step {trainer.global_step}: saved {self._saved}")


class NonFiniteGuard(L.Callback):
    """Before each optimizer step, checks the step's logged `train/*` values and the gradients. A nan/inf stops the
    run (action=stop: TrainingDiverged naming the step, the value and the last finite checkpoint) or drops the batch
    (action=skip: no parameter or optimizer-moment update), counted in `train/skipped_batches`; more skipped batches
    than `max_skipped_fraction` of the run's steps stop it too. Under a gradient scaler (precision 16-mixed) infinite
    gradients are the scaler's business and only the loss is checked.

    The last finite checkpoint: a saved `last.ckpt` holds weights that may already have blown up (finite but huge,
    say) without any check having failed yet. So it is vouched for only by the next step, whose loss and gradients
    are computed from exactly those weights: when they are finite (and so are the weights), it is kept as
    `last-finite.ckpt` (a hard link, or a copy), and that is the checkpoint a divergence names."""

    ACTIONS = ("stop", "skip")
    FINITE = "last-finite.ckpt"

    def __init__(self, action: str = "stop", max_skipped_fraction: float = 0.1):
        if action not in self.ACTIONS:
            raise UserError(f"callbacks.nonfinite.action={action!r}; choose one of {', '.join(self.ACTIONS)}")
        if (
            isinstance(max_skipped_fraction, bool)
            or not isinstance(max_skipped_fraction, (int, float))
            or not 0 <= max_skipped_fraction <= 1
        ):
            raise UserError(f"callbacks.nonfinite.max_skipped_fraction={max_skipped_fraction!r}; a fraction in [0, 1]")
        self.action, self.max_skipped_fraction = action, float(max_skipped_fraction)
        self.skipped = 0
        self._vouched: tuple[int, int] | None = None  # (inode, mtime) of the last.ckpt kept as last-finite.ckpt

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = state_dict["skipped"]

    @staticmethod
    def _problem(trainer: L.Trainer, pl_module: L.LightningModule) -> str | None:
        bad = [
            f"{key} is {float(value)}"
            for key, value in trainer.callback_metrics.items()
            if key.startswith("train/") and not math.isfinite(float(value))
        ]
        if bad:
            return ", ".join(bad)
        scaler = (
            getattr(trainer.precision_plugin, "scaler", None)
            if isinstance(trainer.precision_plugin, MixedPrecision)
            else None
        )
        if scaler is None:
            for name, param in pl_module.named_parameters():
                if param.grad is not None and not torch.isfinite(param.grad).all():
                    return f"the gradient of {name} is not finite"
        return None

    def _finite_checkpoint(self, trainer: L.Trainer) -> Path:
        return last_checkpoint(_stage_dir(trainer)).with_name(self.FINITE)

    def _vouch_for_last(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """This step was finite, computed from the weights last.ckpt holds if it was saved since the last step: keep
        it as last-finite.ckpt (rank 0 writes the files)."""
        last = last_checkpoint(_stage_dir(trainer))
        if not trainer.is_global_zero or not last.is_file():
            return
        stat = last.stat()
        if (stat.st_ino, stat.st_mtime_ns) == self._vouched:
            return
        if not all(torch.isfinite(p).all() for p in pl_module.parameters()):
            return
        keep_as(last, self._finite_checkpoint(trainer))
        self._vouched = (stat.st_ino, stat.st_mtime_ns)

    def _stop(self, trainer: L.Trainer, why: str) -> TrainingDiverged:
        finite = self._finite_checkpoint(trainer)
        kept = (
            f"the last checkpoint with finite weights and loss is {finite}: start a new run from its weights with a "
            f"fresh optimizer, e.g. at a lower stage.lr, with weights_from={finite} (ckpt_path={finite} would restore "
            "its optimizer and schedule too)"
            if finite.is_file()
            else "no checkpoint with finite weights and loss was saved before it"
        )
        return TrainingDiverged(f"{why}; training stopped ({kept})")

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        problem = self._problem(trainer, pl_module)
        if not trainer.strategy.reduce_boolean_decision(problem is not None, all=False):
            self._vouch_for_last(trainer, pl_module)
            return
        where = f"step {trainer.global_step}: {problem or 'a non-finite value on another rank'}"
        if self.action == "stop":
            raise self._stop(trainer, f"{where}; callbacks.nonfinite.action=skip skips such batches instead")
        optimizer.zero_grad(set_to_none=True)  # AdamW leaves parameters without a gradient untouched
        self.skipped += 1
        total = trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches
        if self.skipped > self.max_skipped_fraction * total:
            raise self._stop(
                trainer,
                f"{where}; {self.skipped} batches skipped, more than "
                f"callbacks.nonfinite.max_skipped_fraction={self.max_skipped_fraction:g} of "
                f"the run's {total} steps",
            )
        rank_zero_warn(f"{where}; batch skipped ({self.skipped} so far)")

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        pl_module.log("train/skipped_batches", float(self.skipped))


def keep_as(source: Path, target: Path) -> None:
    """Make `target` the same file as `source`, atomically: a hard link (no copy of gigabytes), or a copy where the
    file system has no hard links."""
    if target.exists() and os.path.samefile(source, target):
        return  # already: renaming a link over another link of the same file would leave the temp link behind
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


class PreemptionDrill(L.Callback):
    """Sends this process `signal_name` when training reaches optimizer step `at_step`: rehearses a preemption (and the
    resume after it) without waiting for the cluster to preempt the job."""

    def __init__(self, at_step: int, signal_name: str = "SIGTERM"):
        self.at_step, self.signum = at_step, signal.Signals[signal_name]

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.at_step and trainer.is_global_zero:
            os.kill(os.getpid(), self.signum)
