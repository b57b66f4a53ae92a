"""The SmolLM2 study's configs (conf/experiment/smollm2/) compose into what each study claims, and the study's
distillation config trains (on the tiny teacher here; the real runs are in experiments/smollm2/)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers import compose_config
from hybrid_distill.cli import run
from hybrid_distill.paths import config_dir

CONF = Path(config_dir())

SWEEPS = {
    "ratio": {"mamba_ratio": "0,0.25,0.5,0.75,0.875,1.0"},
    "init": {"student.init": "attention,random"},
    "loss": {"loss": "kl,sft,kl_sft"},
    "mixer": {"student": "mamba2,mamba1"},
    "backend": {"scan_backend": "torch_chunked,triton"},
}


@pytest.mark.parametrize("study", sorted(SWEEPS))
def test_each_sweep_study_composes_with_the_shared_recipe(study, tmp_path):
    base = OmegaConf.load(CONF / "experiment/smollm2/base.yaml")
    cfg = compose_config(tmp_path, [f"experiment=smollm2/{study}"], shrink=False)
    assert cfg.model.name == "smollm2_135m" and cfg.trainer.accelerator == "gpu"
    assert cfg.experiment_name == f"smollm2-{study}"  # one W&B group per study
    assert OmegaConf.to_container(cfg.hydra.sweeper.params) == SWEEPS[study]
    assert cfg.data.chat_source.endswith("smollm2/seqkd/seqkd_dataset")
    # equal token budgets: every run of every study trains the base's steps x batch x 512 (backend: its own 100 steps)
    steps = 100 if study == "backend" else base.smollm2.steps
    budget = (steps, base.model.recipe.distill.batch_size, 512)
    assert (cfg.stage.max_steps, cfg.stage.batch_size, cfg.stage.seq_len) == budget


def test_seqkd_dpo_and_stepwise_studies_compose(tmp_path):
    seqkd = compose_config(tmp_path, ["experiment=smollm2/seqkd"], shrink=False)
    prompts = OmegaConf.load(CONF / "experiment/smollm2/base.yaml").smollm2.prompts
    assert (seqkd.stage.name, seqkd.data.source, seqkd.stage.max_prompts) == ("seqkd", "shakespeare_instruct", prompts)
    dpo = compose_config(tmp_path, ["experiment=smollm2/dpo"], shrink=False)
    assert dpo.stage.name == "dpo" and dpo.data.pairs_from_chat and dpo.data.source == dpo.smollm2.seqkd_dir
    stepwise = compose_config(tmp_path, ["experiment=smollm2/stepwise", "smollm2.stepwise_steps=7"], shrink=False)
    steps = [dict(step) for step in stepwise.stage.steps]
    assert [s["id"] for s in steps] == ["ratio_0.5", "ratio_0.75", "ratio_0.875"]
    assert all("smollm2.steps=7" in s["overrides"] and "experiment=smollm2/distill" in s["overrides"] for s in steps)


def test_the_study_distillation_config_trains_on_text_and_chat(tiny_teacher, tmp_path):
    # the tiny teacher stands in for SmolLM2; builtin chat rows stand in for the seqkd answers
    results = run(
        compose_config(
            tmp_path,
            [
                "experiment=smollm2/distill",
                "model=tiny",
                "trainer=cpu",
                "logger=none",
                "data.chat_source=builtin",
                "trainer.max_steps=2",
            ],
        )
    )
    assert results["tokens_seen"] > 0 and results["kl"] > 0
