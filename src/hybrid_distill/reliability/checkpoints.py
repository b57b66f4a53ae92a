"""Lightning checkpoints: written atomically, found for resuming, and checked before a run trusts them.

Every stage keeps its checkpoints in `<run dir>/<stage>/checkpoints/`: `last.ckpt` (ModelCheckpoint's save_last, or
the checkpoint saved on a preemption signal), `last-finite.ckpt` (callbacks.NonFiniteGuard) and any others the
`callbacks` group saves. Their names never depend on where the directory is: Lightning would write `last-v1.ckpt` in a
copied or moved run directory (the path recorded in the checkpoint differs), so the stage's ModelCheckpoint has no
version counter (runtime/trainer.py). A stage resumes from the checkpoint of the highest step there, whatever its
name (a copy made by an older version may hold a newer `last-v1.ckpt`), skipping unreadable ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from ..atomic import write_file_atomic
from ..console import say
from ..errors import UserError

LAST = ModelCheckpoint.CHECKPOINT_NAME_LAST + ModelCheckpoint.FILE_EXTENSION  # "last.ckpt"


def checkpoint_dir(stage_dir: Path) -> Path:
    return stage_dir / "checkpoints"


def last_checkpoint(stage_dir: Path) -> Path:
    return checkpoint_dir(stage_dir) / LAST


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temp file beside the target, fsyncs it and renames it over the target, so that a crash
    mid-save leaves the previous checkpoint whole. (Lightning's own local write stages the file in the system temp
    directory and moves it: across file systems that is a copy into the target, and /tmp must hold the whole file.)
    Remote paths (s3://, ...) keep Lightning's write."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path) or storage_options is not None:
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_file_atomic(target, lambda tmp: torch.save(checkpoint, tmp))
        except (OSError, RuntimeError) as err:  # torch's writer reports a failed write as a RuntimeError
            if isinstance(err, RuntimeError) and "PytorchStreamWriter" not in str(err) and "pos" not in str(err):
                raise
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().splitlines()[0]
            free = shutil.disk_usage(target.parent).free if target.parent.is_dir() else 0
            raise UserError(
                f"checkpoint {target} could not be written ({reason}); the previous one is kept; "
                f"{free / 2**20:,.1f} MiB free on that file system (make room, then resume)"
            ) from err


def _load(path: Path) -> dict:
    """A checkpoint's contents, memory-mapped (the key table and shapes are read, not gigabytes of weights), with
    weights_only as Lightning loads it; a file that cannot be read is a UserError saying why."""
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as err:  # truncated zip, garbage bytes, not a torch file: each raises its own type
        raise UserError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0]}): it is "
            "truncated or corrupted"
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "loops" not in checkpoint:
        raise UserError(f"checkpoint {path} is not a Lightning training checkpoint (no state_dict/loops)")
    return checkpoint


def newest_checkpoint(stage_dir: Path) -> Path | None:
    """The checkpoint of `stage_dir` with the highest step (last.ckpt among equals); unreadable ones are skipped with
    a warning. None when there is none."""
    found = []
    for path in sorted(checkpoint_dir(stage_dir).glob("*.ckpt")):
        try:
            step = int(_load(path).get("global_step", 0))
        except UserError as err:
            say("[yellow]warning:[/]", f"{err}; skipped, resuming from the newest readable checkpoint")
            continue
        found.append((step, path.name == LAST, path))
    return max(found)[2] if found else None


def resume_checkpoint(requested: str | None, stage_dir: Path) -> Path | None:
    """The checkpoint a stage resumes from. `requested` is ckpt_path: None resumes this run's own newest checkpoint
    when there is one (a requeued job, or resume=<run dir>; a fresh run has a fresh directory, so never another
    run's), "last" requires one, anything else is a path."""
    if requested not in (None, "last"):
        path = Path(requested).expanduser()
        if not path.is_file():
            raise UserError(
                f"ckpt_path={requested}: {path} does not exist; pass a Lightning .ckpt file, e.g. "
                "<run dir>/<stage>/checkpoints/last.ckpt"
            )
        return path
    newest = newest_checkpoint(stage_dir)
    if newest is None and requested == "last":
        raise UserError(
            f"ckpt_path=last: {checkpoint_dir(stage_dir)} holds no readable checkpoint; to continue an earlier run "
            "pass resume=<its run dir>"
        )
    return newest


def saved_state(module: L.LightningModule) -> dict[str, torch.Tensor]:
    """The module's state_dict as its checkpoints hold it (on_save_checkpoint drops frozen teachers/references)."""
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    return checkpoint["state_dict"]


def check_checkpoint(path: Path, module: L.LightningModule) -> dict:
    """Refuse a checkpoint that cannot be read or that belongs to another model, before Lightning loads it (the
    modules load non-strictly, since their checkpoints leave the frozen teacher out, so a wrong checkpoint would
    otherwise be half ignored). Returns its (memory-mapped) contents."""
    checkpoint = _load(path)
    saved = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    expected = {k: tuple(v.shape) for k, v in saved_state(module).items()}
    missing, unexpected = sorted(expected.keys() - saved), sorted(saved.keys() - expected)
    reshaped = [f"{k} {saved[k]} vs {expected[k]}" for k in sorted(expected.keys() & saved) if saved[k] != expected[k]]
    if missing or unexpected or reshaped:
        problems = [
            f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape of", reshaped))
            if keys
        ]
        raise UserError(
            f"checkpoint {path} is not a checkpoint of this model ({'; '.join(problems)}): "
            "it comes from another stage or architecture"
        )
    return checkpoint


def load_weights(path: Path, module: L.LightningModule) -> None:
    """Only the weights of checkpoint `path` into `module` (checked first): the optimizer, scheduler, step and data
    position start afresh (weights_from=)."""
    module.load_state_dict(check_checkpoint(path, module)["state_dict"], strict=False)  # frozen teacher: not saved
