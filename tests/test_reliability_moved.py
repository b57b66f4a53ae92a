"""A run directory that was copied or moved resumes from its newest checkpoint: checkpoint names do not depend on the
directory's path (no last-v1.ckpt), and a resume takes the checkpoint of the highest step, whatever its name,
skipping unreadable ones with a warning."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch

from helpers import compose_config
from hybrid_distill.cli import run
from hybrid_distill.lit.distill import DistillModule
from hybrid_distill.reliability.checkpoints import checkpoint_dir, newest_checkpoint

EVERY_2 = ["logger=csv", "callbacks.model_checkpoint.every_n_train_steps=2"]


def step_of(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def steps(metrics_csv: Path) -> list[int]:
    with open(metrics_csv) as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")]


@pytest.fixture
def trained_steps(monkeypatch) -> list[int]:
    """The optimizer steps each training step starts at (in this test's runs), and a crash at step 7 on demand."""
    seen, training_step = [], DistillModule.training_step

    def recorded(self, batch, batch_idx):
        seen.append(self.global_step)
        if self.global_step == getattr(DistillModule, "crash_at", None):
            raise RuntimeError("killed")
        return training_step(self, batch, batch_idx)

    monkeypatch.setattr(DistillModule, "training_step", recorded)
    return seen


def test_a_copied_run_directory_continues_from_its_newest_checkpoint(
    tiny_teacher, tmp_path, trained_steps, monkeypatch
):
    original, copy = tmp_path / "original", tmp_path / "copy"
    run(compose_config(original, [*EVERY_2, "trainer.max_steps=4"]))
    shutil.copytree(original, copy)  # its checkpoints record the original's path

    monkeypatch.setattr(DistillModule, "crash_at", 7, raising=False)  # killed after the step-6 checkpoint
    with pytest.raises(RuntimeError, match="killed"):
        run(compose_config(copy, [*EVERY_2, "trainer.max_steps=8"]))
    names = sorted(p.name for p in checkpoint_dir(copy / "distill").iterdir())
    assert names == ["last-finite.ckpt", "last.ckpt"]  # Lightning wrote last-v1.ckpt beside the copied last.ckpt
    assert step_of(copy / "distill" / "checkpoints" / "last.ckpt") == 6

    monkeypatch.setattr(DistillModule, "crash_at", None, raising=False)
    trained_steps.clear()
    run(compose_config(copy, [*EVERY_2, "trainer.max_steps=8"]))
    assert trained_steps == [6, 7]  # not 4 and 5 again
    assert steps(copy / "distill" / "metrics.csv") == list(range(8))
    assert sorted(p.name for p in checkpoint_dir(copy / "distill").iterdir()) == ["last-finite.ckpt", "last.ckpt"]


def test_resume_takes_the_highest_step_whatever_the_name_and_skips_unreadable_checkpoints(
    tiny_teacher, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    run(compose_config(run_dir, [*EVERY_2, "trainer.max_steps=4"]))
    checkpoints = checkpoint_dir(run_dir / "distill")
    # what an older version left in a copied directory: the stale last.ckpt beside a newer last-v1.ckpt
    (checkpoints / "last-finite.ckpt").rename(checkpoints / "stale.ckpt")
    (checkpoints / "last.ckpt").rename(checkpoints / "last-v1.ckpt")
    (checkpoints / "stale.ckpt").rename(checkpoints / "last.ckpt")
    assert (step_of(checkpoints / "last.ckpt"), step_of(checkpoints / "last-v1.ckpt")) == (2, 4)
    assert newest_checkpoint(run_dir / "distill") == checkpoints / "last-v1.ckpt"

    # a copy interrupted mid-file: the newest is unreadable, the next newest is taken, with a warning
    data = (checkpoints / "last-v1.ckpt").read_bytes()
    (checkpoints / "last-v1.ckpt").write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert newest_checkpoint(run_dir / "distill") == checkpoints / "last.ckpt"
    [warning] = [line for line in capsys.readouterr().out.splitlines() if "warning:" in line]
    assert warning.startswith(f"warning: checkpoint {checkpoints / 'last-v1.ckpt'} cannot be read")
    assert warning.endswith("skipped, resuming from the newest readable checkpoint")
