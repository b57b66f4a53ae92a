"""How `python eval.py` ends, on copies of a real sweep member: a stop signal is one line and exit 75 with no results
written; NaN weights give valid JSON (null, listed under `non_finite`) and exit 3; the results' path is printed and
no empty run directory is left behind; every override a message suggests exists in eval.py's config."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from helpers import QUICK_SUITE, compose_eval
import hybrid_distill
from hybrid_distill import cli
from hybrid_distill.eval import suite


def member_copy(tiny_sweep: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(tiny_sweep / "0", run, ignore=shutil.ignore_patterns("eval*.json"))
    return run


def lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_a_stop_signal_is_one_line_and_exit_75_with_nothing_written(tiny_sweep, tmp_path, capsys, monkeypatch):
    run = member_copy(tiny_sweep, tmp_path)
    measure = suite.heldout_quality

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # as Slurm or `kill` would, in the middle of the evaluation
        return measure(*args, **kwargs)

    def unhandled(signum, frame):
        raise AssertionError("the evaluation left SIGTERM to the process's own handler")

    monkeypatch.setattr(suite, "heldout_quality", signalled)
    before = signal.signal(signal.SIGTERM, unhandled)
    try:
        cfg = compose_eval(tmp_path / "out", [f"ckpt={run}", "logger=none", *QUICK_SUITE])
        with pytest.raises(SystemExit) as stopped:
            cli.evaluate_or_exit(cfg)
        assert signal.getsignal(signal.SIGTERM) is unhandled  # given back
    finally:
        signal.signal(signal.SIGTERM, before)
    assert stopped.value.code == 75 and list(run.glob("eval*.json")) == []
    last = lines(capsys.readouterr().out)[-1]
    assert last.startswith("preempted: SIGTERM during the evaluation; no results were written; evaluate again: ")
    assert last.endswith(f"python eval.py ckpt={run} logger=none {' '.join(QUICK_SUITE)}")


def test_nan_weights_give_valid_json_with_null_and_exit_3(tiny_sweep, tmp_path, capsys):
    run = member_copy(tiny_sweep, tmp_path)
    weights = run / "student" / "model.safetensors"
    save_file({k: torch.full_like(v, float("nan")) for k, v in load_file(weights).items()}, weights, {"format": "pt"})
    with pytest.raises(SystemExit) as stopped:
        cli.evaluate_or_exit(compose_eval(tmp_path / "out", [f"ckpt={run}", "logger=none", *QUICK_SUITE]))
    assert stopped.value.code == 3

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    written = run / "eval.json"
    results = json.loads(written.read_text(), parse_constant=refuse)
    assert results["student_dir"] == str(run / "student")  # the copy's own, not the one its metrics.json names
    assert results["quality"]["student_ppl"] is None and results["summary"]["quality/student_ppl"] is None
    assert {"quality.student_ppl", "quality.kl"} <= set(results["non_finite"])
    assert results["quality"]["teacher_ppl"] > 0  # the teacher's metrics are kept
    last = lines(capsys.readouterr().out)[-1]
    assert last.startswith(f"error: the evaluation of {run / 'student'} gave non-finite metrics: ")
    assert "quality.student_ppl" in last and str(written) in last


def test_where_the_results_went_is_printed_and_no_empty_run_directory_is_left(tiny_sweep, tmp_path, capsys):
    run = member_copy(tiny_sweep, tmp_path)
    own = tmp_path / "out"  # what Hydra creates for the call: .hydra/ and the job's log
    cfg = compose_eval(own, [f"ckpt={run}", "logger=none", *QUICK_SUITE])
    OmegaConf.select(cfg, "hydra.output_subdir")  # resolved as Hydra does: marks `own` as this process's new run
    (own / ".hydra").mkdir(parents=True)
    (own / "cli.log").touch()
    cli.evaluate_or_exit(cfg)
    assert not own.exists()
    output = lines(capsys.readouterr().out)
    assert output[-1] == f"results: {run / 'eval.json'}" and not any("run directory" in line for line in output)
    assert json.loads((run / "eval.json").read_text())["suite"]["quality"]["max_batches"] == 1  # its own config


# `key=value` in a message (a placeholder `<...>` stands for a value)
OVERRIDE = re.compile(r"(?<![\w.{])([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*)=(<[^>]*>|[^\s)`'\",;]+)")


def suggested_overrides(path: Path) -> set[str]:
    """Every `key=value` in the string literals of a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    texts = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]
    return {f"{key}={re.sub(r'^<.*>$', 'x', value)}" for text in texts for key, value in OVERRIDE.findall(text)}


def test_every_override_an_evaluation_message_suggests_is_accepted_by_eval_py(tmp_path):
    package = Path(hybrid_distill.__file__).parent
    sources = [package / "eval" / "loading.py", package / "eval" / "suite.py", package / "stages" / "eval.py"]
    overrides = set().union(*map(suggested_overrides, sources))
    assert {"suite.teacher=auto", "suite.teacher=x", "suite.train_length=x"} <= overrides
    for override in sorted(overrides):
        compose_eval(tmp_path, [override])  # an unknown key fails to compose
