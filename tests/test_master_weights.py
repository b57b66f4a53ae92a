"""Mixed precision keeps float32 master copies of what trains (models.trainable.float32_trainable): a student built
from a bf16 teacher would otherwise train bf16 weights, whose small updates round away."""

from __future__ import annotations

import json

import torch

from helpers import compose_config
from hybrid_distill.cli import run
from hybrid_distill.models import build_student, set_trainable
from hybrid_distill.models.trainable import float32_trainable
from test_models_common import make_teacher, random_ids


def bf16_student():
    student = build_student(make_teacher().to(torch.bfloat16), mamba_ratio=0.5)
    return set_trainable(student, "mamba")


def adamw_step(student, lr: float) -> float:
    """One AdamW step on a loss computed under bf16 autocast; the fraction of trained weights it changed."""
    trained = [p for p in student.parameters() if p.requires_grad]
    before = [p.detach().float().clone() for p in trained]
    optimizer = torch.optim.AdamW(trained, lr=lr, weight_decay=0.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = student(random_ids()).logits.float().logsumexp(-1).mean()
    loss.backward()
    optimizer.step()
    changed = sum(int((p.detach().float() != b).sum()) for p, b in zip(trained, before))
    return changed / sum(b.numel() for b in before)


def test_trained_parameters_become_float32_and_frozen_ones_stay_bf16():
    student = bf16_student()
    trained = sum(p.numel() for p in student.parameters() if p.requires_grad)
    assert float32_trainable(student) == trained > 0
    assert all(p.dtype == torch.float32 for p in student.parameters() if p.requires_grad)
    frozen = [p for p in student.parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    assert float32_trainable(student) == 0  # idempotent


def test_small_updates_survive_in_float32_masters_and_round_away_in_bf16():
    lr = 1e-5  # Adam's first step moves each weight by ~lr: below bf16's resolution for any weight above ~3e-3
    masters = bf16_student()
    float32_trainable(masters)
    assert adamw_step(masters, lr) > 0.9
    assert adamw_step(bf16_student(), lr) < 0.5


def test_a_bf16_mixed_distill_run_of_a_bf16_teacher_runs_with_float32_masters_beside_bf16_weights(
    tiny_teacher, tmp_path
):
    overrides = ["logger=none", "trainer.precision=bf16-mixed", "model.dtype=bfloat16", "trainer.max_steps=2"]
    results = run(compose_config(tmp_path, overrides))
    assert results["params/trainable"] > 0 and results["kl"] == results["kl"]  # finite (NaN != NaN)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["student_ppl"] > 0
