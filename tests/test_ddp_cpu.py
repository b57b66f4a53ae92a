"""Distributed data parallel on CPU: two processes (gloo) train one run and write it once."""

from __future__ import annotations

import csv
import json

from helpers import train_cli


def test_ddp_with_two_cpu_processes(tiny_teacher, cache_dir, tmp_path):
    proc = train_cli(
        ["trainer.strategy=ddp", "trainer.devices=2", "trainer.max_steps=3", "logger=csv"], tmp_path, cache_dir
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in proc.stdout + proc.stderr  # Lightning's rank-1 start-up line: two processes ran
    run_dirs = list((tmp_path / "train" / "runs").iterdir())
    assert len(run_dirs) == 1
    metrics = json.loads((run_dirs[0] / "metrics.json").read_text())
    assert metrics["pattern"] == "MAMA"
    with open(run_dirs[0] / "distill" / "metrics.csv") as f:
        steps = {int(row["step"]) for row in csv.DictReader(f)}
    assert {0, 1, 2} <= steps  # the optimizer steps 0..2 were logged
