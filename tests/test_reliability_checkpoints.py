"""Checkpoints are written atomically beside their target: a crash mid-save leaves the previous one whole, and no
copy of the checkpoint is staged in the system temp directory."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

from hybrid_distill.errors import UserError
from hybrid_distill.reliability.checkpoints import AtomicCheckpointIO, last_checkpoint
from test_reliability_resume import fit_toy

EVERY_2_STEPS = ["callbacks.model_checkpoint.every_n_train_steps=2"]


def test_a_crash_while_saving_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    real_save, saves = torch.save, []

    def crash_on_the_second_save(obj, f, *args, **kwargs):
        saves.append(f)
        if len(saves) == 1:
            return real_save(obj, f, *args, **kwargs)
        with open(f, "wb") as out:
            out.write(b"half a checkpoint")
        raise OSError("no space left on device")

    monkeypatch.setattr(torch, "save", crash_on_the_second_save)
    with pytest.raises(UserError, match="could not be written \\(no space left on device\\); the previous one is kept"):
        fit_toy(tmp_path, EVERY_2_STEPS)
    monkeypatch.undo()
    last = last_checkpoint(tmp_path / "toy")
    # no temp file left behind (last-finite.ckpt: the step-2 checkpoint, vouched for by step 3's finite loss)
    assert sorted(p.name for p in last.parent.iterdir()) == ["last-finite.ckpt", "last.ckpt"]
    assert torch.load(last, weights_only=True)["global_step"] == 2  # the step-2 checkpoint, intact
    assert saves[1].parent == last.parent  # written beside the target, then renamed


def test_checkpoints_need_no_room_in_the_system_temp_dir(tmp_path, monkeypatch):
    # Lightning's own local write stages the whole file in tempfile.gettempdir() (often a small node-local /tmp)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-dir"))
    module = fit_toy(tmp_path, EVERY_2_STEPS)
    assert isinstance(module.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert torch.load(last_checkpoint(tmp_path / "toy"), weights_only=True)["global_step"] == 12
    assert not os.path.exists(tmp_path / "no-such-dir")
