"""A run prints each line once: Lightning's INFO lines (also under debug=fast_dev_run) and no warning of Hydra's that
is not the user's concern (the submitit launchers' schema matching)."""

from __future__ import annotations

from helpers import train_cli


def test_hydra_does_not_warn_about_the_submitit_launchers_schema(tmp_path):
    proc = train_cli(["hydra/launcher=submitit_local", "--cfg", "hydra"], tmp_path, tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submitit_local" in proc.stdout  # the launcher's config was composed
    assert "ConfigStore schema" not in proc.stdout + proc.stderr


def test_fast_dev_run_prints_lightnings_info_lines_once(tiny_teacher, cache_dir, tmp_path):
    proc = train_cli(["debug=fast_dev_run"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count("Running in `fast_dev_run` mode") == 1
