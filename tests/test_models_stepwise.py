"""Stepwise replacement (convert_student), what trains (set_trainable), parameter counts."""

import pytest
import torch

from hybrid_distill.models import build_student, convert_student, param_counts, set_trainable
from test_models_common import make_teacher, perturb_, random_ids


def _trained_half_student(mixer="mamba2"):
    student = build_student(make_teacher(), mamba_ratio=0.5, mixer=mixer)
    perturb_(student)  # the "trained" 50 % student differs from the teacher everywhere
    return student


@pytest.mark.parametrize("mixer", ["mamba2", "mamba1"])
def test_convert_initialises_new_layers_from_the_students_attention_and_keeps_trained_mamba(mixer):
    student = _trained_half_student(mixer)
    assert student.config.pattern == "MAMA"
    old_attention = student.layers[1].mixer
    trained_mamba = {k: v.clone() for k, v in student.layers[0].mixer.state_dict().items()}
    mlp = student.layers[1].mlp.gate_proj.weight.clone()

    assert convert_student(student, mamba_ratio=0.75) is student
    assert student.config.pattern == "MMMA"
    new = student.layers[1].mixer
    assert student.layers[1].kind == "M" and type(new) is type(student.layers[0].mixer)
    rows = new.in_proj.weight
    assert torch.equal(rows[new.in_proj_rows("C")], old_attention.q_proj.weight)  # the student's, not the teacher's
    assert torch.equal(rows[new.in_proj_rows("B")], old_attention.k_proj.weight)
    assert torch.equal(rows[new.in_proj_rows("x")], old_attention.v_proj.weight)
    assert torch.equal(new.out_proj.weight, old_attention.o_proj.weight)
    for k, v in student.layers[0].mixer.state_dict().items():
        assert torch.equal(v, trained_mamba[k]), k
    assert torch.equal(student.layers[1].mlp.gate_proj.weight, mlp)
    assert student.layers[3].kind == "A"
    assert student(random_ids()).logits.isfinite().all()


def test_convert_refuses_to_turn_mamba_back_into_attention():
    student = _trained_half_student()
    with pytest.raises(ValueError, match=r"'AMMA' would turn Mamba layer\(s\) \[0\] of the student's pattern 'MAMA'"):
        convert_student(student, pattern="AMMA")
    with pytest.raises(ValueError, match="mamba_ratio"):
        convert_student(student, mamba_ratio=1.2)
    assert student.config.pattern == "MAMA"  # unchanged after a refusal


def test_set_trainable_mamba_freezes_everything_but_the_mamba_mixers():
    student = set_trainable(_trained_half_student(), "mamba")
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("layers.0.mixer.", "layers.2.mixer.")) for n in trainable)
    counts = param_counts(student)
    assert counts["trainable"] == counts["mamba"] > 0
    student(random_ids()).logits.sum().backward()
    assert student.layers[0].mixer.in_proj.weight.grad is not None
    assert student.layers[1].mixer.q_proj.weight.grad is None and student.embed_tokens.weight.grad is None

    set_trainable(student, "mamba_mlp")
    counts = param_counts(student)
    assert counts["trainable"] == counts["mamba"] + counts["mlp"]
    set_trainable(student, "all")
    assert param_counts(student)["trainable"] == param_counts(student)["total"]
    with pytest.raises(ValueError, match="'mlp'"):
        set_trainable(student, "mlp")


def test_param_counts_by_kind():
    student = build_student(make_teacher(), mamba_ratio=0.5)  # d=32, H=4, Hkv=2, hd=8, 2 Mamba-2 layers
    counts = param_counts(student)
    assert counts["total"] == sum(p.numel() for p in student.parameters())
    assert counts["attention"] + counts["mamba"] + counts["mlp"] + counts["other"] == counts["total"]
    in_proj = 32 * (32 + 16 + 16 + 32 + 4)  # z, x, B, C, dt
    conv = 64 * 4 + 64
    per_layer = in_proj + conv + 32 * 32 + 3 * 4 + 32  # + out_proj, dt_bias/A_log/D, gated-norm weight
    assert counts["mamba"] == 2 * per_layer
    assert counts["attention"] == 2 * (32 * 32 + 2 * 32 * 16 + 32 * 32)
    assert counts["mlp"] == 4 * 3 * 32 * 64
    assert counts["other"] == 2 * 64 * 32 + 9 * 32  # embeddings + LM head, 2 norms per layer + final norm


def test_nested_pattern_keeps_the_rule_where_it_nests_and_moves_attention_where_it_does_not():
    from hybrid_distill.models.allocation import layer_pattern, nested_pattern

    half32 = layer_pattern(32, 0.5)
    assert nested_pattern(half32, 0.75) == layer_pattern(32, 0.75)  # MambaInLlama's placements nest as they are
    half30 = layer_pattern(30, 0.5)
    rule = layer_pattern(30, 0.75)
    assert any(r == "A" and h == "M" for r, h in zip(rule, half30))  # the plain rule does not nest on 30 layers
    nested = nested_pattern(half30, 0.75)
    assert nested.count("A") == rule.count("A") and nested[-1] == "A"
    assert all(h == "A" for n, h in zip(nested, half30) if n == "A")
    assert nested_pattern(nested, 0.875).count("A") == layer_pattern(30, 0.875).count("A")
