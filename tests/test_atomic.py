"""Directories published by rename: whole or not at all, and an earlier writer's copy is never replaced."""

from __future__ import annotations

import os

import pytest
import torch

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


def test_stale_temps_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    import subprocess

    from hybrid_distill.atomic import remove_stale_temps

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    stale = [tmp_path / f".last.ckpt.tmp-{dead.pid}", tmp_path / f".tmp-tiny-abc-{dead.pid}-x1y2"]
    live = [tmp_path / f".last.ckpt.tmp-{os.getpid()}", tmp_path / f".tmp-tiny-abc-{os.getpid()}-x1y2"]
    for path in stale + live:
        path.mkdir() if path.name.startswith(".tmp-") else path.write_bytes(b"half")
    (tmp_path / "last.ckpt").write_bytes(b"whole")
    assert sorted(remove_stale_temps(tmp_path)) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([p.name for p in live] + ["last.ckpt"])


def test_renames_are_made_durable_and_files_get_the_usual_permissions(tmp_path, monkeypatch):
    import stat

    from hybrid_distill.atomic import publish_dir, write_file_atomic
    from hybrid_distill.eval.results import write_new_json
    from hybrid_distill.models.checkpoint import save_checkpoint

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.fstat(fd)) or real_fsync(fd))
    write_file_atomic(tmp_path / "a.json", lambda tmp: tmp.write_text("{}"))
    assert any(stat.S_ISDIR(s.st_mode) and s.st_ino == tmp_path.stat().st_ino for s in synced)  # the directory too

    old = os.umask(0o022)
    try:
        model = torch.nn.Linear(2, 2)
        model.config = type("C", (), {"tie_word_embeddings": False, "to_json": lambda self: "{}"})()
        save_checkpoint(model, tmp_path / "student")
        publish_dir(tmp_path / "published", lambda d: (d / "f").write_text("x"))
        paths = [
            tmp_path / "a.json",
            tmp_path / "student" / "model.safetensors",
            write_new_json(tmp_path, {"a": 1}),
            tmp_path / "published" / "f",
        ]
        assert {p.name: oct(p.stat().st_mode & 0o777) for p in paths} == {p.name: "0o644" for p in paths}
        assert oct((tmp_path / "published").stat().st_mode & 0o777) == "0o755"
    finally:
        os.umask(old)
