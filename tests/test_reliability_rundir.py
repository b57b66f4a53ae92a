"""Every run gets a directory of its own, even when runs start in the same second; resume=<run dir> and a requeued
job reuse theirs."""

from __future__ import annotations

import pickle
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers import compose_config
from hybrid_distill.errors import UserError
from hybrid_distill.reliability.rundir import check_resume_dir, claim_unique_dir


def test_runs_started_together_claim_distinct_directories(tmp_path):
    base = str(tmp_path / "runs" / "2026-01-01_12-00-00")
    with ProcessPoolExecutor(4) as pool:  # separate processes, like separate `python train.py` launches
        claimed = list(pool.map(claim_unique_dir, [base] * 8))
    assert sorted(claimed) == sorted([base] + [f"{base}_{n}" for n in range(1, 8)])
    assert all(Path(d).is_dir() for d in claimed)


def _hydra_dirs(tmp_path: Path, monkeypatch, overrides: list[str] = ()) -> tuple[str, str]:
    monkeypatch.setenv("HD_LOG_DIR", str(tmp_path / "logs"))
    cfg = compose_config(tmp_path / "unused", list(overrides))
    return cfg.hydra.run.dir, cfg.hydra.sweep.dir


def test_the_run_and_sweep_directories_of_the_config_are_claimed_once_per_launch(tmp_path, monkeypatch):
    run_a, sweep_a = _hydra_dirs(tmp_path, monkeypatch)
    run_b, sweep_b = _hydra_dirs(tmp_path, monkeypatch)
    assert Path(run_a).parent == tmp_path / "logs" / "train" / "runs" and Path(run_a).is_dir()
    assert Path(sweep_a).parent == tmp_path / "logs" / "train" / "multiruns"
    assert run_a != run_b and sweep_a != sweep_b  # two launches: two directories, whatever the clock says
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(_\d+)?", Path(d).name) for d in (run_a, run_b))


def test_a_requeued_job_gets_the_directory_claimed_at_launch(tmp_path, monkeypatch):
    monkeypatch.setenv("HD_LOG_DIR", str(tmp_path / "logs"))
    cfg = compose_config(tmp_path / "unused", [])
    sweep_dir = cfg.hydra.sweep.dir
    # submitit pickles the launcher's config with the job; the resolver's cache travels with it
    requeued = pickle.loads(pickle.dumps(cfg))
    assert requeued.hydra.sweep.dir == sweep_dir
    assert len(list((tmp_path / "logs" / "train" / "multiruns").iterdir())) == 1


def test_resume_reuses_the_given_directory(tmp_path, monkeypatch):
    earlier = tmp_path / "earlier_run"
    earlier.mkdir()
    run_dir, _ = _hydra_dirs(tmp_path, monkeypatch, [f"resume={earlier}"])
    assert run_dir == str(earlier)
    assert not (tmp_path / "logs" / "train" / "runs").exists()  # no fresh directory was claimed


def test_resume_needs_an_earlier_run_there(tmp_path):
    (tmp_path / ".hydra").mkdir()  # what Hydra itself writes before the run starts
    (tmp_path / "train.log").touch()
    with pytest.raises(UserError, match=f"resume={tmp_path}: no earlier run there"):
        check_resume_dir(tmp_path)
    (tmp_path / "distill").mkdir()
    check_resume_dir(tmp_path)


def test_resolvers_are_cached_per_config(tmp_path):
    cfg = OmegaConf.create({"dir": f"${{unique_dir:{tmp_path}/x}}"})
    assert cfg.dir == cfg.dir == str(tmp_path / "x")
    assert OmegaConf.create({"dir": f"${{unique_dir:{tmp_path}/x}}"}).dir == str(tmp_path / "x_1")
