"""experiments/train_throughput/run.py: the table it builds from runs' metrics, and (slow) the runner end to end at
toy scale on the CPU through `python train.py` and the bare loop."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from helpers import REPO

SCRIPT = REPO / "experiments" / "train_throughput" / "run.py"


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("train_throughput_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_metrics_are_medians_after_warmup(runner, tmp_path):
    stage = tmp_path / "distill"
    stage.mkdir()
    (stage / "metrics.csv").write_text(
        "step,train/device/items_per_sec,train/mfu,train/peak_memory_gib,val/kl\n"
        "1,5,0.1,9,\n"  # warm-up: left out
        "3,100,0.4,20,\n"
        "4,,,,0.5\n"  # a validation row
        "5,300,0.5,22,\n"
        "6,200,,,\n"
    )
    assert runner.read_metrics(tmp_path, "distill", warmup=2) == (200.0, 0.45, 21.0)


def test_table_has_the_columns_and_the_ratios(runner):
    R = runner.Result
    results = [
        R("llama3_2_1b", 2048, "distill", "Mamba mixers", 8, 30_000.0, 0.35, 50.0, bare_tokens_per_sec=31_000.0),
        R("llama3_2_1b", 2048, "sft", "everything (teacher)", 4, 40_000.0, 0.4, 45.0),
        R("llama3_8b", 2048, "distill_all_ckpt", "everything", None, None, None, None),
    ]
    header, _, distill, sft, oom = _rows(runner.table(results))
    assert header == runner.COLUMNS
    assert distill == [
        "llama3_2_1b",
        "2048",
        "distill",
        "Mamba mixers",
        "8",
        "30,000",
        "35.0 %",
        "50.0",
        "0.75",
        "0.97",
    ]
    assert sft[-2:] == ["1.00", "-"]
    assert oom[4:] == ["out of memory", "-", "-", "-", "-", "-"]


@pytest.mark.slow  # four `python train.py` / bench processes: minutes on a loaded 2-core machine
def test_toy_run_writes_a_table_with_a_row_per_variant(runner, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("HD_CACHE_DIR", str(cache_dir))
    out = runner.main(["--toy", "--variants", "distill,sft_fast", "--out", str(tmp_path)])
    header, _, *rows = _rows(out.read_text())
    assert header == runner.COLUMNS
    assert [row[2] for row in rows] == ["distill", "sft_fast"]
    for row in rows:
        assert row[:2] == ["tiny", "32"] and row[4] == "2"
        assert float(row[5].replace(",", "")) > 0  # tokens/s, from the run's own metrics.csv
    assert float(rows[0][9]) > 0  # Lightning vs bare loop
    assert "torch" in out.read_text().splitlines()[0]  # the versions line
