"""stage.force retrains the cached teacher without ever leaving the cache without one."""

from __future__ import annotations

import shutil

import pytest

from helpers import compose_config
from hybrid_distill.atomic import publish_dir
from hybrid_distill.runtime import run_context
from hybrid_distill.stages import teacher as teacher_stage


def test_a_crash_while_force_retraining_keeps_the_cached_teacher(tiny_teacher, tmp_path, monkeypatch):
    cfg = compose_config(
        tmp_path / "run",
        ["logger=none", "stage=pretrain_teacher", "stage.force=true", f"paths.cache_dir={tmp_path / 'cache'}"],
    )
    cached = teacher_stage.teacher_cache_dir(cfg)
    session = compose_config(tmp_path / "other", ["logger=none"])
    shutil.copytree(teacher_stage.teacher_cache_dir(session), cached)  # the session's teacher, same cache key
    before = sorted(p.name for p in cached.iterdir())

    def crash(*args, **kwargs):
        raise RuntimeError("killed mid-training")

    monkeypatch.setattr(teacher_stage, "load_or_train_tokenizer", crash)  # the first step of retraining
    with pytest.raises(RuntimeError, match="killed mid-training"):
        teacher_stage.run_pretrain_teacher(cfg, run_context(cfg))
    assert sorted(p.name for p in cached.iterdir()) == before
    teacher_stage.load_teacher(str(cached))  # still loads


def test_publish_dir_replace_swaps_in_the_complete_new_copy(tmp_path):
    target = tmp_path / "teacher"
    assert publish_dir(target, lambda d: (d / "v").write_text("1"))
    assert not publish_dir(target, lambda d: (d / "v").write_text("2"))  # without replace the first copy stays
    assert (target / "v").read_text() == "1"
    assert publish_dir(target, lambda d: (d / "v").write_text("3"), replace=True)
    assert (target / "v").read_text() == "3"
    assert [p.name for p in tmp_path.iterdir()] == ["teacher"]  # no staging or old copy left
