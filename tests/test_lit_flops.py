"""Distillation FLOPs (for MFU) follow the documented formula, and the monitor logs them during training."""

from __future__ import annotations

import csv


from helpers import compose_config
from hybrid_distill.cli import run
from hybrid_distill.lit.flops import distill_flops_per_token, matmul_params, mixing_flops_per_token
from hybrid_distill.models import build_student, set_trainable


def test_ratio_zero_everything_trainable_costs_eight_n_plus_four_mixing(tiny_teacher):
    teacher, _ = tiny_teacher
    student = set_trainable(build_student(teacher, mamba_ratio=0.0), "all")
    n = matmul_params(teacher)
    assert n == matmul_params(student) == matmul_params(student, trainable_only=True)
    mix = 4 * 64 * teacher.config.num_attention_heads * teacher.config.head_dim * teacher.config.num_hidden_layers
    assert mixing_flops_per_token(student.config.pattern, student.config, 64) == mix
    # teacher fwd (2N + mix) + student fwd (2N + mix) + input grads (2N + 2 mix) + weight grads (2N)
    assert distill_flops_per_token(teacher, student, 64) == 8 * n + 4 * mix
    assert distill_flops_per_token(teacher, student, 64, with_teacher=False) == 6 * n + 3 * mix


def test_mamba_layers_cost_the_chunked_scan_and_frozen_weights_no_weight_grads(tiny_teacher):
    teacher, _ = tiny_teacher
    student = set_trainable(build_student(teacher, mamba_ratio=0.5), "mamba")
    c = student.config
    h, p, q = c.num_attention_heads, c.head_dim, 64
    scan = h * (4 * q * p + 4 * p * p)
    attention = 4 * 256 * h * p
    assert mixing_flops_per_token(c.pattern, c, 256) == c.pattern.count("M") * scan + c.pattern.count("A") * attention
    weight_grads = 2 * matmul_params(student, trainable_only=True)
    assert 0 < weight_grads < 2 * matmul_params(student)
    expected = (
        2 * matmul_params(teacher)
        + mixing_flops_per_token("A" * len(c.pattern), teacher.config, 256)
        + 4 * matmul_params(student)
        + 3 * mixing_flops_per_token(c.pattern, c, 256)
        + weight_grads
    )
    assert distill_flops_per_token(teacher, student, 256) == expected


def test_distill_run_logs_model_flops_per_second(tiny_teacher, tmp_path):
    run(compose_config(tmp_path, ["logger=csv", "trainer.max_steps=2", "callbacks.mfu.every=1"]))
    rows = list(csv.DictReader(open(tmp_path / "distill" / "metrics.csv")))
    rates = [float(r["train/flops_per_sec"]) for r in rows if r.get("train/flops_per_sec")]
    assert len(rates) == 2 and all(rate > 0 for rate in rates)
    assert not any(r.get("train/mfu") for r in rows)  # no known peak on a CPU
