"""What tests share besides fixtures: the repository root, the shrunk tiny preset, and composing or launching the
real config the way `python train.py` / `python eval.py` would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from hybrid_distill.paths import config_dir

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
    "model.recipe.distill.val_every=2",  # the training stages' validation cadence (stage=distill, sft_teacher, dpo)
    "model.recipe.dpo.val_every=2",
    "trainer.limit_val_batches=2",
    "trainer.log_every_n_steps=1",
    "callbacks.progress_bar=null",
]


def compose_config(
    tmp_path: Path, overrides: list[str] = (), shrink: bool = True, config_name: str = "train"
) -> DictConfig:
    """The real config, composed like `python train.py` (or `python eval.py`: config_name="eval") would, with
    outputs under tmp_path (and the tiny preset shrunk by TINY unless shrink=False)."""
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose(config_name, overrides=[*(TINY if shrink else []), *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.job.override_dirname = ",".join(overrides)
    HydraConfig().set_config(cfg)
    return cfg


# an evaluation suite of quality on one held-out batch, nothing else: seconds, for tests of what surrounds the suite
QUICK_SUITE = [
    "suite.quality.max_batches=1",
    "suite.quality.batch_size=2",
    *(f"suite.{section}.enabled=false" for section in ("recall", "throughput", "speculative", "samples")),
]


def train_cli(args: list[str], tmp_path: Path, cache_dir: Path, multirun: bool = False) -> subprocess.CompletedProcess:
    """`python train.py` in a child process, outputs under tmp_path, the shrunk tiny preset, W&B offline."""
    env = {**os.environ, "HD_CACHE_DIR": str(cache_dir), "HD_LOG_DIR": str(tmp_path), "WANDB_MODE": "offline"}
    flags = ["-m"] if multirun else []
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *flags, *TINY, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def eval_cli(args: list[str], cwd: Path, cache_dir: Path) -> subprocess.CompletedProcess:
    """`python eval.py` in a child process, started in `cwd`, with the session's cache, W&B offline."""
    env = {**os.environ, "HD_CACHE_DIR": str(cache_dir), "HD_LOG_DIR": str(cwd), "WANDB_MODE": "offline"}
    return subprocess.run(
        [sys.executable, str(REPO / "eval.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def compose_eval(tmp_path: Path, overrides: list[str]):
    """conf/eval.yaml composed like `python eval.py` would, with its own outputs under tmp_path."""
    return compose_config(tmp_path, overrides, shrink=False, config_name="eval")


def save_run_config(cfg, run_dir: Path) -> None:
    """What Hydra writes into a run directory before the job: the composed config, unresolved, without `hydra`."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), run_dir / ".hydra" / "config.yaml")
