"""Directories published by rename: whole or not at all, and an earlier writer's copy is never replaced."""

from __future__ import annotations

import pytest

from hybrid_distill.atomic import publish_dir


def test_publish_dir_appears_whole_and_leaves_no_staging(tmp_path):
    target = tmp_path / "cache" / "item"
    assert publish_dir(target, lambda d: (d / "a.txt").write_text("ours"))
    assert (target / "a.txt").read_text() == "ours"
    assert sorted(p.name for p in target.parent.iterdir()) == ["item"]


def test_publish_dir_keeps_the_copy_published_first(tmp_path):
    target = tmp_path / "item"
    target.mkdir()
    (target / "a.txt").write_text("theirs")
    assert not publish_dir(target, lambda d: (d / "a.txt").write_text("ours"))
    assert (target / "a.txt").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["item"]


def test_publish_dir_failure_leaves_nothing(tmp_path):
    def crash(d):
        (d / "half.txt").write_text("half")
        raise RuntimeError("crashed mid-write")

    with pytest.raises(RuntimeError, match="mid-write"):
        publish_dir(tmp_path / "item", crash)
    assert list(tmp_path.iterdir()) == []
