"""experiments/recall/run.py (MQAR from scratch) on a tiny configuration: it trains, scores and logs rows."""

from __future__ import annotations

import importlib.util
import json
import sys

import yaml

from helpers import REPO

SCRIPT = REPO / "experiments" / "recall" / "run.py"


def test_recall_experiment_runs(tmp_path, monkeypatch):
    cfg = yaml.safe_load((SCRIPT.parent / "config.yaml").read_text())
    cfg.update(models={"transformer": "A", "mamba": "M"}, settings=[[16, 2]], steps=3, batch_size=4, test_examples=8)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    spec = importlib.util.spec_from_file_location("recall_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["run.py", "--config", str(config), "--out", str(tmp_path / "out")])
    module.main()
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [(r["model"], r["pattern"], r["seq_len"], r["pairs"]) for r in rows] == [
        ("transformer", "A", 16, 2),
        ("mamba", "M", 16, 2),
    ]
    assert all(0 <= r["accuracy"] <= 1 and r["queries"] == 16 and r["steps"] == 3 for r in rows)
