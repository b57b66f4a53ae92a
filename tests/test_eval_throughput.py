"""Throughput bench on CPU at small sizes: it runs, reports sane fields and exact state sizes (no timing claims)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from helpers import REPO
from hybrid_distill.eval.decoders import make_decoder, prefill
from hybrid_distill.eval.throughput import measure_generation, throughput_grid
from hybrid_distill.models import build_student

CONFIG = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    teacher = LlamaForCausalLM(LlamaConfig(**CONFIG)).eval()
    return teacher, build_student(teacher, mamba_ratio=0.75).eval()  # "MMMA"


def test_measurement_fields_and_exact_state_sizes(pair):
    teacher, hybrid = pair
    L, B, N, W = 20, 3, 5, 2
    rows = {
        name: measure_generation(model, L, B, N, 128, warmup=W)
        for name, model in (("teacher", teacher), ("hybrid", hybrid))
    }
    for row in rows.values():
        assert (row["prompt_len"], row["batch"], row["new_tokens"]) == (L, B, N)
        assert row["decode_tok_s"] == pytest.approx(B * N / row["decode_s"]) and row["decode_s"] > 0
        assert row["prefill_tok_s"] > 0 and row["peak_extra_bytes"] is None  # no CUDA here
    S, kv_heads, hd = L + W + N, 2, 8  # tokens held after prefill, warm-up and decoding
    kv_per_layer = 2 * B * kv_heads * S * hd * 4  # K and V, float32
    assert rows["teacher"]["state_bytes"] == 4 * kv_per_layer
    conv = B * (2 * kv_heads * hd + 4 * hd) * 3 * 4  # (B, x + B + C channels, d_conv - 1)
    ssm = B * 4 * hd * hd * 4  # (B, heads, head_dim, d_state) float32
    assert rows["hybrid"]["state_bytes"] == kv_per_layer + 3 * (conv + ssm)  # constant in S for the Mamba layers


def test_grid_adds_the_ratio_to_the_first_model(pair):
    teacher, hybrid = pair
    rows = throughput_grid({"teacher": teacher, "hybrid": hybrid}, [8, 16], [2], 2, 128, warmup=1)
    assert [(r["model"], r["prompt_len"], r["batch"]) for r in rows] == [
        (m, L, 2) for L in (8, 16) for m in ("teacher", "hybrid")
    ]
    for teacher_row, hybrid_row in zip(rows[::2], rows[1::2]):
        assert "decode_speedup_vs_teacher" not in teacher_row
        low, high = hybrid_row["decode_speedup_range_vs_teacher"]
        assert low <= hybrid_row["decode_speedup_vs_teacher"] <= high
        for row in (teacher_row, hybrid_row):
            assert row["repeats"] == 3 and row["decode_tok_s_min"] <= row["decode_tok_s"] <= row["decode_tok_s_max"]


def test_grid_measures_on_the_engine_asked_for(pair):
    """suite.throughput.engine=static: the study's decoding tokens/s come from the static engine, not the eager loop."""
    teacher, hybrid = pair
    rows = throughput_grid(
        {"teacher": teacher, "hybrid": hybrid}, [8], [2], 2, 128, warmup=1, repeats=1, engine="static"
    )
    assert {r["engine"] for r in rows} == {"static"}


def test_repeats_alternate_the_models_and_the_speedup_is_the_median_paired_ratio(monkeypatch):
    """Fake timings: the 2nd repeat is slowed by a load spike for both models measured in it; paired ratios stay 2."""
    from hybrid_distill.eval import throughput

    order, speeds = (
        [],
        iter(
            [
                1.0,
                1.0,  # untimed first calls
                10.0,
                20.0,
                4.0,
                2.0,
                10.0,
                20.0,
            ]
        ),
    )  # repeat 0: teacher, hybrid; 1: hybrid, teacher; 2

    def fake(model, prompt_len, batch, new_tokens, vocab_size, **kwargs):
        order.append(model)
        return {
            "prompt_len": prompt_len,
            "batch": batch,
            "prefill_s": 1.0,
            "prefill_tok_s": 1.0,
            "decode_s": 1.0,
            "decode_tok_s": next(speeds),
            "ms_per_step": 1.0,
        }

    monkeypatch.setattr(throughput, "measure_generation", fake)
    teacher_row, hybrid_row = throughput.throughput_grid({"teacher": "T", "hybrid": "H"}, [8], [1], 2, 16, repeats=3)
    assert order == ["T", "H", "T", "H", "H", "T", "T", "H"]
    assert hybrid_row["decode_speedup_vs_teacher"] == 2.0 and hybrid_row["decode_speedup_range_vs_teacher"] == [
        2.0,
        2.0,
    ]
    assert (teacher_row["decode_tok_s"], teacher_row["decode_tok_s_min"], teacher_row["decode_tok_s_max"]) == (
        10,
        2,
        10,
    )


@pytest.mark.parametrize("which", [0, 1])
def test_chunked_prefill_matches_one_pass(pair, which):
    model = pair[which]
    ids = torch.randint(0, 128, (2, 23), generator=torch.Generator().manual_seed(1))
    whole = prefill(make_decoder(model), ids)
    chunked = prefill(make_decoder(model), ids, chunk=5)
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-4)


def test_gpu_bench_script_runs_on_cpu(tmp_path):
    """experiments/throughput/bench.py end to end with the tiny preset (a smoke test; its numbers mean nothing)."""
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "experiments" / "throughput" / "bench.py"),
            "--device",
            "cpu",
            "--preset",
            "tiny",
            "--lens",
            "32",
            "--batches",
            "1",
            "--hybrid-batches",
            "2",
            "--new-tokens",
            "2",
            "--warmup",
            "1",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    engines = ("eager", "static")  # the default on a CPU (cuda-graph needs CUDA)
    expected = [(m, e, 1) for e in engines for m in ("teacher", "hybrid")] + [("hybrid", e, 2) for e in engines]
    assert [(r["model"], r["engine"], r["batch"]) for r in rows] == expected
    assert rows[1]["decode_speedup_vs_teacher"] > 0 and rows[3]["decode_speedup_vs_teacher"] > 0
    for row in rows:  # the floor: bytes a step must read at the copy rate measured in the run
        assert row["floor_ms"] == pytest.approx(1000 * row["bytes_per_step"] / (row["copy_rate_gb_s"] * 1e9))
        assert row["wall_over_floor"] == pytest.approx(row["ms_per_step"] / row["floor_ms"])
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["pattern"] == "MMMM" and meta["scan_backend"] == "torch_chunked"
    assert "| hybrid/teacher" in proc.stdout and "| wall / floor |" in proc.stdout
