"""What W&B gets to group and filter runs by: sweep groups of evaluations, swept settings, stage tags, and a
teacher-pretraining run that records its own stage."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from helpers import compose_config, save_run_config
from hybrid_distill.eval.loading import Checkpoint, load_run_config
from hybrid_distill.runtime import run_tags
from hybrid_distill.stages.eval import run_identity, training_settings
from hybrid_distill.stages.teacher import pretraining_config


def _sweep_member(tmp_path: Path) -> Checkpoint:
    """A run directory as Hydra leaves a multirun member: .hydra/{config,hydra,overrides}.yaml."""
    run_dir = tmp_path / "multiruns" / "2026-12-01_10-00-00" / "3"
    save_run_config(compose_config(run_dir, ["mamba_ratio=0.75", "loss=kl"]), run_dir)
    OmegaConf.save(
        {
            "hydra": {
                "mode": "MULTIRUN",
                # as Hydra saves it: sweep.dir unresolved (it interpolates the job's keys), the member's dir resolved
                "sweep": {
                    "dir": "${unique_dir:${paths.log_dir}/${task_name}/multiruns/${now:%H}}",
                    "subdir": "${hydra.job.num}",
                },
                "job": {"override_dirname": "loss=kl,mamba_ratio=0.75", "num": 3},
                "runtime": {"cwd": str(tmp_path), "output_dir": str(run_dir)},
            }
        },
        run_dir / ".hydra" / "hydra.yaml",
    )
    OmegaConf.save(["mamba_ratio=0.75", "loss=kl"], run_dir / ".hydra" / "overrides.yaml")
    return Checkpoint(run_dir / "student", None, run_dir, load_run_config(run_dir))


def test_the_eval_of_a_sweep_member_joins_the_sweeps_group_with_its_swept_settings(tmp_path):
    ck = _sweep_member(tmp_path)
    identity = run_identity(ck, tmp_path / "eval_out")
    assert identity.group == "sweep-2026-12-01_10-00-00" and identity.name == "loss=kl,mamba_ratio=0.75"
    settings = training_settings(ck)
    assert settings["swept"] == {"mamba_ratio": "0.75", "loss": "kl"}
    assert settings["mamba_ratio"] == 0.75 and settings["loss"]["name"] == "kl"  # the keys training runs log


def test_runs_are_tagged_with_stage_preset_and_experiment(tmp_path):
    cfg = compose_config(tmp_path, ["experiment=direct_0.875"])
    assert run_tags(cfg.logger, "distill", cfg.model.name, cfg.experiment_name) == [
        "stage:distill",
        "model:tiny",
        "experiment:direct_0.875",
    ]
    assert cfg.logger.save_code is True


def test_a_teacher_pretrained_on_the_way_records_its_own_stage(tmp_path):
    cfg = compose_config(tmp_path, ["stage=distill"])
    own = pretraining_config(cfg)
    assert own.stage.name == "pretrain_teacher" and own.stage.lr == cfg.model.recipe.pretrain_teacher.lr
    assert own.trainer.max_steps == cfg.model.recipe.pretrain_teacher.max_steps
    assert own.data == cfg.model.pretrain_data and "loss" not in own and "student" not in own
    assert cfg.stage.name == "distill"  # the run's own config is untouched
