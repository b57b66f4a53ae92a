"""Every model preset builds through train.py's own code path (model.path=random), shrunk but with its own
rope_scaling, tying and tokenizer layout, and does a distillation step and an evaluation on the CPU: a preset that
transformers cannot build (a nested mapping it refuses, a renamed field) fails here, not on the first GPU run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers import train_cli
from hybrid_distill.paths import config_dir

PRESETS = sorted(p.stem for p in (Path(config_dir()) / "model").glob("*.yaml"))
SHRUNK = [
    "model.path=random",
    "model.architecture.num_hidden_layers=2",
    "model.architecture.hidden_size=64",
    "model.architecture.intermediate_size=128",
    "model.architecture.num_attention_heads=4",
    "model.architecture.num_key_value_heads=2",
    "model.architecture.head_dim=16",
    "model.architecture.vocab_size=512",
    "model.tokenizer.vocab_size=512",
    "model.dtype=float32",
    "model.recipe.distill.max_steps=1",
    "model.recipe.distill.seq_len=32",
    "model.recipe.distill.batch_size=2",
    "trainer.limit_val_batches=1",
    "student.calibration_batches=0",
    "logger=csv",
]


def test_the_presets_are_the_ones_this_test_knows():
    assert PRESETS == ["llama3_2_1b", "llama3_8b", "smollm2_135m", "tiny"]


@pytest.mark.timeout(600)
def test_every_preset_builds_distils_and_evaluates(tmp_path, cache_dir):
    done = train_cli(["model=" + ",".join(PRESETS), *SHRUNK], tmp_path, cache_dir, multirun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {}
    for member in sorted(p.parent.parent for p in tmp_path.rglob(".hydra/config.yaml")):
        cfg = OmegaConf.load(member / ".hydra" / "config.yaml")
        runs[cfg.model.name] = (cfg, json.loads((member / "metrics.json").read_text()))
    assert sorted(runs) == PRESETS
    for name, (cfg, metrics) in runs.items():
        preset = OmegaConf.load(Path(config_dir()) / "model" / f"{name}.yaml").architecture
        student = json.loads((Path(metrics["student_dir"]) / "config.json").read_text())
        # the shrunk run kept what makes the preset itself: rope scaling and tied embeddings
        assert cfg.model.architecture.get("rope_scaling") == preset.get("rope_scaling"), name
        assert student["tie_word_embeddings"] == preset.get("tie_word_embeddings", False), name
        if preset.get("rope_scaling"):
            assert student["rope_parameters"]["rope_type"] == preset.rope_scaling.rope_type, name
        assert metrics["tokens_seen"] > 0 and 0 < metrics["kl"] < 20 and metrics["student_ppl"] > 1, (name, metrics)
