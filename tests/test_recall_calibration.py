"""The recall overrides chosen for the SmolLM2 study (the EVAL_RECALL line of experiments/smollm2/recall_calibration.md)
are valid eval.py overrides: they compose and run the recall sections end to end on a tiny distilled run."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from helpers import REPO, compose_config, compose_eval, save_run_config
from hybrid_distill import cli
from hybrid_distill.stages.eval import evaluate_from_config

CALIBRATION = REPO / "experiments" / "smollm2" / "recall_calibration.md"


def eval_recall() -> list[str]:
    (line,) = [x for x in CALIBRATION.read_text().splitlines() if x.startswith("EVAL_RECALL=")]
    (value,) = shlex.split(line.removeprefix("EVAL_RECALL="))  # as bash reads the line: one quoted string
    return value.split()


@pytest.fixture(scope="module")
def distilled_run(tiny_teacher, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("distill_run")
    cfg = compose_config(run_dir, ["logger=csv"])
    save_run_config(cfg, run_dir)
    cli.run(cfg)
    return run_dir


def test_the_study_recall_overrides_run_in_eval(distilled_run, tmp_path):
    overrides = eval_recall()
    assert any(o.startswith("suite.recall.multiples=") for o in overrides)
    others_off = [f"suite.{s}.enabled=false" for s in ("quality", "throughput", "speculative", "samples")]
    # the tiny teacher is at chance everywhere: score the student anyway, on 2 examples a cell
    quick = [
        "suite.recall.min_teacher_accuracy=null",
        "suite.recall.num_examples=2",
        "suite.recall_items.num_examples=2",
    ]
    cfg = compose_eval(tmp_path, [f"ckpt={distilled_run}", *overrides, *others_off, *quick])
    assert cfg.suite.recall.text_format == "plain" and cfg.suite.recall_items.enabled
    results = json.loads(Path(evaluate_from_config(cfg)["eval_json"]).read_text())
    train_length = results["train_length"]  # 64 for the tiny run (512 in the study)
    lengths = {int(round(train_length * m)) for m in cfg.suite.recall.multiples}
    assert {(r["task"], r["length"]) for r in results["recall"]} == {
        (t, n) for t in cfg.suite.recall.tasks for n in lengths
    }
    assert {(r["task"], r["items"]) for r in results["recall_items"]} == {
        (t, n) for t in cfg.suite.recall_items.tasks for n in cfg.suite.recall_items.counts
    }
    scored = [r for r in results["recall"] + results["recall_items"] if r["accuracy"] is not None]
    assert scored and {r["model"] for r in scored} == {"student", "teacher"}
