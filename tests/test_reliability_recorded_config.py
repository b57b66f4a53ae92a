"""A run continued in its own directory keeps the config it recorded: another stage or a changed setting is refused
before anything runs, allowed changes are recorded in a new file, and nothing of the earlier run is rewritten."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from helpers import compose_config, save_run_config, train_cli
from hybrid_distill.errors import UserError
from hybrid_distill.reliability.recorded_config import check_recorded_config, record_resume, resume_checked
from hybrid_distill.runtime import job_config


def recorded_run(tmp_path, overrides=()):
    run_dir = tmp_path / "run"
    save_run_config(compose_config(run_dir, ["logger=none", *overrides]), run_dir)
    return run_dir


def test_a_changed_setting_is_refused_naming_it(tmp_path):
    run_dir = recorded_run(tmp_path)
    cfg = compose_config(run_dir, ["logger=none", "stage.lr=0.5", "seed=7"])
    with pytest.raises(
        UserError,
        match=r"recorded with another config: seed 1234 -> 7; stage.lr .* -> 0.5; "
        r"a resumed run keeps its config",
    ):
        check_recorded_config(job_config(cfg), run_dir)


def test_another_stage_is_refused(tmp_path):
    run_dir = recorded_run(tmp_path)
    cfg = compose_config(run_dir, ["logger=none", "stage=dpo", "loss=dpo", "data=preference"])
    with pytest.raises(UserError, match=f"{run_dir} is a stage=distill run; it cannot continue as stage=dpo"):
        check_recorded_config(job_config(cfg), run_dir)


def test_allowed_changes_are_recorded_in_a_new_file(tmp_path):
    run_dir = recorded_run(tmp_path)
    record = (run_dir / ".hydra" / "config.yaml").read_text()
    cfg = compose_config(
        run_dir, ["logger=csv", "trainer.max_steps=9", f"resume={run_dir}", "callbacks.nonfinite.action=skip"]
    )
    changes = check_recorded_config(job_config(cfg), run_dir)
    assert changes["trainer.max_steps"] == (4, 9) and changes["callbacks.nonfinite.action"] == ("stop", "skip")
    record_resume(run_dir, changes, ["trainer.max_steps=9"])
    assert not (run_dir / ".hydra" / "resume-1.yaml").exists()  # not before the resume has passed its checks
    path = resume_checked(run_dir / "distill")  # a stage of the run, whose checks passed
    assert path == run_dir / ".hydra" / "resume-1.yaml"
    assert OmegaConf.load(path).changed["trainer.max_steps"] == {"recorded": 4, "now": 9}
    assert (run_dir / ".hydra" / "config.yaml").read_text() == record  # the record itself is untouched
    assert resume_checked(run_dir) is None  # written once
    record_resume(run_dir, changes, [])
    assert resume_checked(run_dir).name == "resume-2.yaml"


def test_the_same_config_continues(tmp_path):
    run_dir = recorded_run(tmp_path)
    assert check_recorded_config(job_config(compose_config(run_dir, ["logger=none"])), run_dir) == {}


# slow (20 s of subprocesses): the refusals are tested in-process above, and that a refused resume writes nothing in
# test_reliability_leftovers; this is the same through train.py
@pytest.mark.slow
def test_cli_resume_with_another_stage_or_setting_leaves_the_run_intact(tiny_teacher, cache_dir, tmp_path):
    # stage=pretrain_teacher finds the session's cached teacher: a finished run in seconds
    first = train_cli(["stage=pretrain_teacher", "logger=none"], tmp_path, cache_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    [run_dir] = (tmp_path / "train" / "runs").iterdir()
    before = {p: p.read_bytes() for p in [run_dir / "metrics.json", *(run_dir / ".hydra").iterdir()]}

    for args, message in [
        (["stage=distill"], "is a stage=pretrain_teacher run; it cannot continue as stage=distill"),
        (["stage=pretrain_teacher", "stage.force=true"], "stage.force False -> True"),
    ]:
        again = train_cli([*args, "logger=none", f"resume={run_dir}"], tmp_path, cache_dir)
        assert again.returncode == 2, again.stderr[-3000:]
        assert message in again.stdout and "Traceback" not in again.stdout + again.stderr
        assert {p: p.read_bytes() for p in before} == before
        assert sorted((run_dir / ".hydra").iterdir()) == sorted(p for p in before if p.parent.name == ".hydra")
    assert json.loads((run_dir / "metrics.json").read_text())["teacher_dir"]


def test_cli_resume_of_a_directory_that_does_not_exist_creates_nothing(tmp_path, cache_dir):
    typo = tmp_path / "train" / "runs" / "2026-01-01_00-00-0"
    result = train_cli([f"resume={typo}", "logger=none"], tmp_path, cache_dir)
    assert result.returncode == 2
    assert f"error: resume={typo}: no such run directory" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr and not typo.exists()
