"""The embedded default pipeline end to end on a shrunk config, and what it leaves on disk and in W&B."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from helpers import compose_config, train_cli
from hybrid_distill.cli import run


def _wandb_offline_runs(root: Path) -> list[Path]:
    return sorted(root.rglob("offline-run-*"))


def test_default_pipeline_distils_and_logs_to_wandb_offline(tiny_teacher, tmp_path):
    cfg = compose_config(tmp_path, ["trainer.max_steps=6", "++stage.val_every=3"])
    assert cfg.mamba_ratio == 0.5 and cfg.logger.name == "wandb" and cfg.loss.name == "kl_sft"
    results = run(cfg)
    # the real hybrid at ratio 0.5: half the layers are Mamba
    assert results["pattern"].count("M") == len(results["pattern"]) // 2
    assert math.isfinite(results["teacher_ppl"]) and math.isfinite(results["student_ppl"])
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["student_ppl"] == results["student_ppl"]
    runs = _wandb_offline_runs(tmp_path)
    assert len(runs) == 1
    wandb_file = next(runs[0].glob("*.wandb"))
    # the binary run log holds the metric names that were logged
    payload = wandb_file.read_bytes()
    for key in (b"train/loss", b"val/student_ppl", b"val/kl", b"train/grad_norm", b"lr-AdamW"):
        assert key in payload, key


# slow (a 2-member sweep in a subprocess): the session's tiny_sweep and test_eval_sweep run real sweeps, and
# test_stages counts the W&B runs a run leaves
@pytest.mark.slow
def test_multirun_sweep_leaves_two_wandb_runs(tiny_teacher, cache_dir, tmp_path):
    proc = train_cli(["mamba_ratio=0,0.5", "trainer.max_steps=5"], tmp_path, cache_dir, multirun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep_dirs = list((tmp_path / "train" / "multiruns").iterdir())
    assert len(sweep_dirs) == 1
    runs = _wandb_offline_runs(sweep_dirs[0])
    assert len(runs) == 2
    patterns = sorted(
        json.loads((d / "metrics.json").read_text())["pattern"]
        for d in sweep_dirs[0].iterdir()
        if (d / "metrics.json").exists()
    )
    assert patterns == ["AAAA", "MAMA"]


def test_bad_override_is_one_clear_line(tiny_teacher, cache_dir, tmp_path):
    proc = train_cli(["mamba_ratio=1.5", "logger=none"], tmp_path, cache_dir)
    assert proc.returncode != 0
    assert "mamba_ratio" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_submitit_local_launcher_runs_two_jobs(tiny_teacher, cache_dir, tmp_path):
    proc = train_cli(
        ["hydra/launcher=submitit_local", "mamba_ratio=0,0.5", "trainer.max_steps=2", "logger=csv"],
        tmp_path,
        cache_dir,
        multirun=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep_dir = next((tmp_path / "train" / "multiruns").iterdir())
    assert (sweep_dir / ".submitit").is_dir()  # the jobs went through submitit
    patterns = sorted(json.loads(p.read_text())["pattern"] for p in sweep_dir.glob("*/metrics.json"))
    assert patterns == ["AAAA", "MAMA"]
