"""Slurm/submitit jobs ask for what the trainer will use: GPUs and tasks from trainer.accelerator/devices, a name
after the run, a day's time limit also for local jobs."""

from __future__ import annotations

import pytest

import hybrid_distill.cli  # noqa: F401  (registers the launcher resolvers, as `python train.py` does)
from helpers import compose_config
from hybrid_distill.launcher import job_gpus


@pytest.mark.parametrize(
    "trainer, devices, gpus, tasks",
    [("cpu", [], 0, 1), ("gpu", [], 1, 1), ("ddp", [], 8, 8), ("fsdp", [], 8, 8), ("ddp", ["trainer.devices=4"], 4, 4)],
)
def test_slurm_resources_follow_the_trainer(tmp_path, monkeypatch, trainer, devices, gpus, tasks):
    monkeypatch.delenv("HD_NODE_GPUS", raising=False)
    monkeypatch.setenv("HD_LOG_DIR", str(tmp_path))  # resolving the sweep dir claims it
    cfg = compose_config(tmp_path, ["hydra/launcher=submitit_slurm", f"trainer={trainer}", *devices])
    launcher = cfg.hydra.launcher
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (gpus, tasks, 1)
    assert launcher.name == "hd-train-distill" and launcher.mem_gb is None and list(launcher.setup) == []


def test_local_jobs_get_a_days_limit_and_the_trainers_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("HD_LOG_DIR", str(tmp_path))
    launcher = compose_config(tmp_path, ["hydra/launcher=submitit_local", "trainer=gpu"]).hydra.launcher
    assert (launcher.timeout_min, launcher.gpus_per_node, launcher.name) == (1440, 1, "hd-train-distill")


def test_an_unusable_device_spec_is_one_clear_error():
    assert job_gpus("gpu", "0,1", 8) == 2 and job_gpus("gpu", [2, 3], 8) == 2 and job_gpus("gpu", "auto", 4) == 4
    with pytest.raises(ValueError, match=r"trainer.devices='many'"):
        job_gpus("gpu", "many", 8)
