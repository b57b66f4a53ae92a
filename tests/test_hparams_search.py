"""Hyper-parameter search: `python train.py` returns the configured metric to Hydra (what a sweeper optimises), and
the Optuna preset composes when its plugin is installed."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from helpers import compose_config
from hybrid_distill import cli
from hybrid_distill.errors import UserError


def test_the_task_function_returns_the_optimized_metric(tiny_teacher, tmp_path):
    cfg = compose_config(tmp_path, ["logger=none", "optimized_metric=kl", "trainer.max_steps=2"])
    job_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])  # what a Hydra job gets
    value = cli._train(job_cfg)  # hydra.main passes a given config straight to the task function
    assert isinstance(value, float) and value == json.loads((tmp_path / "metrics.json").read_text())["kl"]


def test_an_unknown_or_missing_metric_is_one_clear_error():
    assert cli.optimized_value({"kl": 0.5}, None) is None
    with pytest.raises(UserError, match=r"optimized_metric='val/kl' .*no such key.*\['kl'\]"):
        cli.optimized_value({"kl": 0.5, "pattern": "MAMA"}, "val/kl")
    with pytest.raises(UserError, match="got None"):
        cli.optimized_value({"kl_before": None, "kl": 0.5}, "kl_before")


def test_the_optuna_preset_composes_with_the_plugin(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="optional extra: pip install -e '.[optuna]'")
    cfg = compose_config(tmp_path, ["hparams_search=optuna"])
    assert cfg.optimized_metric == "kl" and cfg.hydra.sweeper.direction == "minimize"
    assert set(cfg.hydra.sweeper.params) >= {"stage.lr", "loss.divergence_weight"}
