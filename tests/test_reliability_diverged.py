"""After a divergence caused by the learning rate, the run continues from the last finite weights with a fresh
optimizer at a new lr (weights_from=); continuing the checkpoint's whole training state (ckpt_path=) keeps its
optimizer's lr, and says that the new stage.lr is ignored."""

from __future__ import annotations

import csv
import math

import pytest

from helpers import compose_config, save_run_config
from hybrid_distill.cli import run
from hybrid_distill.errors import TrainingDiverged
from hybrid_distill.exits import exit_on_user_error

BLOW_UP = ["logger=csv", "stage.lr=1e20", "callbacks.model_checkpoint.every_n_train_steps=1"]


def column(metrics_csv, key: str) -> list[float]:
    with open(metrics_csv) as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


def test_an_lr_divergence_continues_from_the_last_finite_weights_with_a_fresh_optimizer(tiny_teacher, tmp_path, capsys):
    diverged = tmp_path / "diverged"
    cfg = compose_config(diverged, BLOW_UP)
    save_run_config(cfg, diverged)  # the record Hydra writes before `python train.py` runs
    with pytest.raises(SystemExit) as stopped:
        exit_on_user_error(run, cfg)
    assert stopped.value.code == 3
    finite = diverged / "distill" / "checkpoints" / "last-finite.ckpt"
    [line] = [line for line in capsys.readouterr().out.splitlines() if "error:" in line]
    assert line.startswith("error: step 2: train/divergence is nan")
    assert (
        f"start a new run from its weights with a fresh optimizer, e.g. at a lower stage.lr, with weights_from={finite}"
        in line
    )

    # ckpt_path restores the optimizer at the blown-up lr: the new stage.lr is ignored, and it says so
    with pytest.raises(TrainingDiverged, match="^step 2: "):
        run(compose_config(tmp_path / "restored", ["logger=csv", "stage.lr=1e-3", f"ckpt_path={finite}"]))
    [warning] = [line for line in capsys.readouterr().out.splitlines() if "warning:" in line]
    assert f"ckpt_path={finite} restores the optimizer and random states of the run that saved it" in warning
    assert (
        f"ignored: stage.lr 1e+20 -> 0.001; to start from its weights with a fresh optimizer pass weights_from={finite}"
        in warning
    )

    # weights_from: the checkpoint's weights (calibrated; this run's own calibration is off), a fresh optimizer at 1e-3
    fresh = tmp_path / "fresh"
    results = run(
        compose_config(
            fresh, ["logger=csv", "stage.lr=1e-3", f"weights_from={finite}", "student.calibration_batches=0"]
        )
    )
    assert results["student_ppl_before"] == pytest.approx(
        column(diverged / "distill" / "metrics.csv", "val/student_ppl")[0]
    )
    assert 0 < max(column(fresh / "distill" / "metrics.csv", "lr-AdamW")) <= 1e-3
    assert all(math.isfinite(loss) for loss in column(fresh / "distill" / "metrics.csv", "train/loss"))
    assert "warning:" not in capsys.readouterr().out
