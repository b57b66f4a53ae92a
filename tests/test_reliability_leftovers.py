"""A run that cannot start leaves nothing behind and says why in one line: an unwritable run or cache directory, a
resume whose checkpoint fails its checks; a damaged cached teacher is noticed (size and sha256 recorded when it was
cached), said in one line, and pretrained again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import compose_config, save_run_config, train_cli
from hybrid_distill.atomic import checksum_problem
from hybrid_distill.cli import run
from hybrid_distill.errors import UserError
from hybrid_distill.reliability.rundir import LOCK
from hybrid_distill.runtime import run_context
from hybrid_distill.stages import teacher as teacher_stage
from test_reliability_errors import one_error_line
from test_reliability_lock import files


@pytest.fixture
def unwritable(tmp_path) -> Path:
    """A directory path that cannot be written: a read-only directory, or (as root, whom permission bits do not
    stop) a path below a regular file, which fails the same way."""
    directory = tmp_path / "read_only"
    directory.mkdir()
    directory.chmod(0o555)
    if not os.access(directory, os.W_OK):
        yield directory / "x"
    else:
        (tmp_path / "a_file").touch()
        yield tmp_path / "a_file" / "x"
    directory.chmod(0o755)


@pytest.mark.parametrize("key,multirun", [("hydra.run.dir", False), ("hydra.sweep.dir", True)])
def test_an_unwritable_hydra_output_dir_is_one_line_and_creates_nothing(unwritable, tmp_path, key, multirun):
    proc = train_cli([f"{key}={unwritable}", "logger=none"], tmp_path, tmp_path / "cache", multirun=multirun)
    assert one_error_line(proc).startswith(f"error: {key} {unwritable} is not writable (")
    assert not unwritable.exists() and not (tmp_path / "train").exists()


def test_an_unwritable_cache_dir_is_one_line_and_leaves_no_run_directory(unwritable, tmp_path):
    line = one_error_line(train_cli([f"paths.cache_dir={unwritable}", "logger=none"], tmp_path, tmp_path / "cache"))
    assert line.startswith(f"error: paths.cache_dir (HD_CACHE_DIR) {unwritable} is not writable (")
    assert list((tmp_path / "train" / "runs").iterdir()) == []  # the run directory Hydra had set up is removed


def test_a_resume_that_fails_its_checks_writes_nothing(tiny_teacher, tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_config(run_dir, ["logger=csv"])
    save_run_config(cfg, run_dir)  # the record Hydra writes before `python train.py` runs
    run(cfg)
    damaged = tmp_path / "damaged.ckpt"
    data = (run_dir / "distill" / "checkpoints" / "last.ckpt").read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    before = files(run_dir)
    with pytest.raises(UserError, match=f"^checkpoint {damaged} cannot be read"):
        run(compose_config(run_dir, ["logger=csv", "trainer.max_steps=8", f"ckpt_path={damaged}"]))
    after = files(run_dir)
    after.pop(LOCK), before.pop(LOCK)  # the lock file names the process that held it while checking
    assert after == before  # no .hydra/resume-1.yaml, no rows appended to metrics.csv


def test_a_truncated_cached_teacher_is_said_in_one_line_and_pretrained_again(tiny_teacher, tmp_path, capsys):
    # a teacher of its own cache key (2 pretraining steps: quick), cached in the session's cache by a real run
    two_steps = ["logger=none", "model.recipe.pretrain_teacher.max_steps=2"]
    cfg = compose_config(tmp_path / "first", two_steps)
    teacher_stage.obtain_teacher(cfg, run_context(cfg))
    cached = teacher_stage.teacher_cache_dir(cfg)
    assert checksum_problem(cached) is None
    weights = cached / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[:1000])  # e.g. a disk that filled while something rewrote it
    capsys.readouterr()
    cfg = compose_config(tmp_path / "second", two_steps)
    teacher_stage.obtain_teacher(cfg, run_context(cfg))
    [line] = [line for line in capsys.readouterr().out.splitlines() if "warning:" in line]
    assert line == (
        f"warning: the cached teacher {cached} is damaged (model.safetensors has 1,000 bytes, {size:,} when it was "
        "written); pretraining it again"
    )
    assert checksum_problem(cached) is None  # the new one is whole, and recorded
