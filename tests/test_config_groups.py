"""Every option of every config group composes; the ones that can run on a CPU run one training step,
the others fail with one clear error that names what is missing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers import compose_config
from hybrid_distill.cli import run
from hybrid_distill.paths import config_dir
from hybrid_distill.errors import UserError

CONF = Path(config_dir())
ONE_STEP = ["trainer.max_steps=1", "++stage.val_every=1", "trainer.limit_val_batches=1", "logger=none"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))  # _*: shared bases


def test_every_group_option_composes_and_resolves(tmp_path):
    groups = ["model", "student", "loss", "data", "stage", "trainer", "speed", "logger", "callbacks", "debug"]
    composed = 0
    for group in groups:
        for option in options(group):
            cfg = compose_config(tmp_path, [f"{group}={option}"], shrink=group != "model" or option == "tiny")
            job_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
            OmegaConf.to_container(job_cfg, resolve=True)  # every interpolation resolves
            composed += 1
    assert composed >= 30


@pytest.mark.parametrize(
    "override",
    [
        "student=mamba1",
        "student=mamba2",
        "loss=kl",
        "loss=kl_sft",
        "loss=sft",
        "loss=rkl",
        "loss=jsd",
        "scan_backend=auto",
        "scan_backend=torch_ref",
        "scan_backend=torch_chunked",
        "data=chat",
        "logger=csv",
        "callbacks=default",
        "debug=fast_dev_run",
    ],
)
def test_runnable_option_trains_one_step(tiny_teacher, tmp_path, override):
    results = run(compose_config(tmp_path, [*ONE_STEP, override]))
    assert math.isfinite(results["student_ppl"]) and results["student_ppl"] > 1
    assert (Path(results["student_dir"]) / "config.json").is_file()


@pytest.mark.parametrize("model", ["llama3_8b", "llama3_2_1b"])
def test_real_teacher_presets_without_weights_give_one_clear_error(tiny_teacher, tmp_path, model):
    with pytest.raises(UserError, match="model.path"):
        run(compose_config(tmp_path, [*ONE_STEP, f"model={model}"], shrink=False))


def test_mamba_ssm_backend_on_cpu_is_a_clear_error(tiny_teacher, tmp_path):
    with pytest.raises(UserError, match="scan_backend=mamba_ssm"):
        run(compose_config(tmp_path, [*ONE_STEP, "scan_backend=mamba_ssm"]))


def test_preference_loss_under_distill_is_a_clear_error(tiny_teacher, tmp_path):
    with pytest.raises(UserError, match="loss=dpo"):
        run(compose_config(tmp_path, [*ONE_STEP, "loss=dpo"]))


@pytest.mark.parametrize("trainer", ["gpu", "ddp", "fsdp"])
def test_gpu_trainer_presets_compose_and_need_a_gpu(tmp_path, trainer):
    cfg = compose_config(tmp_path, [f"trainer={trainer}"])
    assert cfg.trainer.accelerator == "gpu"
    assert cfg.trainer.precision == "bf16-mixed"
    with pytest.raises(Exception, match="(?i)gpu|cuda"):
        instantiate(cfg.trainer)


def test_slurm_launcher_defaults(tmp_path):
    cfg = compose_config(tmp_path, ["hydra/launcher=submitit_slurm", "trainer=ddp"])  # GPUs follow the trainer
    launcher = cfg.hydra.launcher
    assert launcher.gpus_per_node == 8 and launcher.nodes == 1 and launcher.signal_delay_s > 0
    assert "SlurmLauncher" in launcher._target_
