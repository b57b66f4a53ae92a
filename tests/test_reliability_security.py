"""Security: nothing a run directory or a checkpoint holds runs code when it is evaluated or resumed."""

from __future__ import annotations

import os

import pytest
import torch

from hybrid_distill.errors import UserError
from hybrid_distill.eval.loading import load_student, resolve_checkpoint
from hybrid_distill.reliability.checkpoints import check_checkpoint


class Payload:
    """Unpickling this calls os.mkdir(marker): a stand-in for any command a crafted checkpoint could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def crafted_checkpoint(run_dir, marker):
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("stage:\n  name: distill\n")
    path = run_dir / "distill" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {"student.x": Payload(marker)}, "loops": {}}, path)
    return path


def test_eval_of_a_crafted_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    path = crafted_checkpoint(tmp_path / "run", marker)
    with pytest.raises(UserError, match="cannot be read as a Lightning checkpoint of tensors"):
        load_student(resolve_checkpoint(str(path)), None, None, None)
    assert not marker.exists()


def test_resuming_from_a_crafted_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    path = crafted_checkpoint(tmp_path / "run", marker)
    with pytest.raises(UserError, match="cannot be read"):
        check_checkpoint(path, module=None)  # read before Lightning's own (weights_only) load
    assert not marker.exists()
