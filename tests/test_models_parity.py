"""A student with mamba_ratio=0 is the teacher: same logits, same greedy generations."""

import pytest
import torch

from hybrid_distill.models import build_student
from test_models_common import make_teacher, random_ids

LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}

VARIANTS = {
    "gqa": {},
    "gqa_llama3_rope": {"rope_parameters": LLAMA3_ROPE},
    "mha_tied_bias_headdim": {
        "num_key_value_heads": 4,
        "tie_word_embeddings": True,
        "attention_bias": True,
        "mlp_bias": True,
        "head_dim": 16,
    },
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_ratio_zero_student_equals_teacher(variant):
    teacher = make_teacher(**VARIANTS[variant])
    student = build_student(teacher, mamba_ratio=0.0)
    assert student.config.pattern == "AAAA"
    ids = random_ids(length=40)  # longer than original_max_position_embeddings: the llama3 scaling matters
    with torch.no_grad():
        expected = teacher(ids).logits
        got = student(ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_llama3_rope_scaling_is_really_used():
    # guard for the test above: the scaled teacher must differ from the unscaled one, else the variant proves nothing
    ids = random_ids(length=40)
    with torch.no_grad():
        scaled = make_teacher(rope_parameters=LLAMA3_ROPE)(ids).logits
        plain = make_teacher(rope_parameters={"rope_type": "default", "rope_theta": 500000.0})(ids).logits
    assert (scaled - plain).abs().max() > 1e-3


def test_ratio_zero_greedy_generation_equals_hf_generate():
    teacher = make_teacher()
    student = build_student(teacher, mamba_ratio=0.0)
    prompt = random_ids(batch=2, length=5)
    expected = teacher.generate(prompt, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    got = student.generate(prompt, max_new_tokens=8)
    assert torch.equal(got, expected)
