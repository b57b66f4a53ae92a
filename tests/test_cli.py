"""The command line as a person meets it: a fast --help that lists this app's groups, a warning when a ratio is
rounded, and debug runs kept apart from real ones."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from helpers import REPO, compose_config
from hybrid_distill.paths import config_dir
from hybrid_distill.stages.student import check_student_config


def _help_groups(script: str) -> dict[str, set[str]]:
    out = subprocess.run(
        [sys.executable, str(REPO / script), "--help"], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    block = out.split("== Configuration groups", 1)[1].split("== Config", 1)[0]
    return {
        m[1]: {o.strip() for o in m[2].split(",")}
        for m in re.finditer(r"^([\w/@]+): ([\w., ]+?)(?:\s{2,}.*)?$", block, re.M)
    }


def test_train_help_lists_exactly_the_train_groups_of_conf():
    conf = Path(config_dir())
    expected = {}
    for folder in conf.rglob("*"):
        options = {p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_")}
        group = str(folder.relative_to(conf))
        if folder.is_dir() and options and not group.startswith(("hydra", "eval")):
            expected[group] = options
    assert _help_groups("train.py") == expected


def test_cli_imports_neither_torch_nor_lightning():
    """--help, --cfg and every TAB completion import cli.py; Lightning and torch load only when a run starts."""
    code = "import sys, hybrid_distill.cli; print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(REPO / "src")}
    ).stdout
    assert out.strip() == "[]"


def test_a_rounded_ratio_is_a_warning(tmp_path, capsys):
    cfg = compose_config(tmp_path, ["mamba_ratio=0.875"])
    check_student_config(cfg, num_layers=4)
    assert "mamba_ratio=0.875 of 4 layers rounds to 4 Mamba layers (ratio 1): pattern MMMM" in capsys.readouterr().out
    check_student_config(compose_config(tmp_path, ["mamba_ratio=0.75"]), num_layers=4)
    assert "warning" not in capsys.readouterr().out


def test_debug_runs_write_to_their_own_folder(tmp_path):
    import hybrid_distill.cli  # noqa: F401  (registers the run-directory resolvers)

    for debug in ("fast_dev_run", "limit_batches", "profiler"):
        cfg = compose_config(tmp_path, [f"debug={debug}", f"paths.log_dir={tmp_path}"])
        assert cfg.task_name == "debug"
        assert Path(OmegaConf.select(cfg, "hydra.run.dir")).parent == tmp_path / "debug" / "runs"
