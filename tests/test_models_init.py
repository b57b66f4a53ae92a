"""Attention -> Mamba init: the mapping of the MambaInLlama table, and the linear-attention identity it rests on."""

import math

import pytest
import torch

from hybrid_distill.models import HybridConfig, build_student, init_from_attention, make_mixer
from test_models_common import make_teacher


def _linear_attention_mixer(mixer_name: str, teacher, layer: int):
    """A mixer with decay 1 (A=0), dt=1, identity conv, no gate, D=0, initialised from the teacher's attention."""
    attention = teacher.model.layers[layer].self_attn
    config = HybridConfig.from_llama(
        teacher.config,
        "MMMM",
        mixer=mixer_name,
        conv_init="identity",
        conv_activation="identity",
        gate=False,
    )
    mixer = init_from_attention(make_mixer(config), attention)
    softplus_inv_1 = math.log(math.e - 1)  # softplus(x) = 1
    with torch.no_grad():
        mixer.A_log.fill_(-math.inf)  # A = -exp(-inf) = 0: no decay
        mixer.D.zero_()
        if mixer_name == "mamba2":
            mixer.in_proj.weight[mixer.in_proj_rows("dt")].zero_()
            mixer.dt_bias.fill_(softplus_inv_1)
        else:
            mixer.dt_proj.weight.zero_()
            mixer.dt_proj.bias.fill_(softplus_inv_1)
    return mixer


def _causal_linear_attention(attention, h, n_heads, n_kv_heads, head_dim):
    """y_t = sum_{s<=t} (q_t . k_s) v_s per head, no softmax, no scaling, no RoPE, GQA by repeating k/v; then o_proj."""
    bsz, T, _ = h.shape
    q = attention.q_proj(h).view(bsz, T, n_heads, head_dim)
    k = attention.k_proj(h).view(bsz, T, n_kv_heads, head_dim).repeat_interleave(n_heads // n_kv_heads, dim=2)
    v = attention.v_proj(h).view(bsz, T, n_kv_heads, head_dim).repeat_interleave(n_heads // n_kv_heads, dim=2)
    scores = torch.einsum("bthd,bshd->bhts", q, k) * torch.ones(T, T).tril()  # causal, unnormalised
    y = torch.einsum("bhts,bshd->bthd", scores, v).reshape(bsz, T, n_heads * head_dim)
    return attention.o_proj(y)


@pytest.mark.parametrize("mixer_name", ["mamba2", "mamba1"])
def test_attention_initialised_mixer_is_causal_linear_attention(mixer_name):
    teacher = make_teacher(attention_bias=True)  # biases too: they must land on the right rows
    attention = teacher.model.layers[1].self_attn
    mixer = _linear_attention_mixer(mixer_name, teacher, 1)
    h = torch.randn(2, 11, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got, _ = mixer(h)
        expected = _causal_linear_attention(attention, h, 4, 2, 8)
    assert expected.abs().max() > 1e-2  # non-trivial
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mixer_name", ["mamba2", "mamba1"])
def test_build_student_copies_attention_rows_and_keeps_kv_width(mixer_name):
    teacher = make_teacher()
    student = build_student(teacher, pattern="MAMA", mixer=mixer_name)
    for i in (0, 2):
        mixer, attn = student.layers[i].mixer, teacher.model.layers[i].self_attn
        w = mixer.in_proj.weight
        assert torch.equal(w[mixer.in_proj_rows("C")], attn.q_proj.weight)  # (H*hd, d)
        assert torch.equal(w[mixer.in_proj_rows("B")], attn.k_proj.weight)  # (Hkv*hd, d): no repeat of weights
        assert torch.equal(w[mixer.in_proj_rows("x")], attn.v_proj.weight)  # (Hkv*hd, d)
        assert torch.equal(mixer.out_proj.weight, attn.o_proj.weight)
        assert mixer.conv1d.weight.shape[0] == 2 * 16 + 32  # conv over x, B (KV width) and C (query width)
    # the kept attention layers are the teacher's
    assert torch.equal(student.layers[1].mixer.q_proj.weight, teacher.model.layers[1].self_attn.q_proj.weight)


def test_new_parameter_init_matches_the_documented_ranges():
    teacher = make_teacher(num_hidden_layers=8, num_attention_heads=4, hidden_size=256, intermediate_size=64)
    m2 = build_student(teacher, mamba_ratio=1.0).layers[0].mixer
    A = torch.exp(m2.A_log)
    assert A.min() >= 1.0 and A.max() <= 16.0
    dt = torch.nn.functional.softplus(m2.dt_bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    assert torch.equal(m2.D, torch.ones(4))
    w = m2.conv1d.weight[:, 0]  # identity conv: last tap 1
    assert torch.equal(w[:, -1], torch.ones(w.shape[0])) and not w[:, :-1].any() and not m2.conv1d.bias.any()
    m1 = build_student(teacher, mamba_ratio=1.0, mixer="mamba1").layers[0].mixer
    N = m1.A_log.shape[1]
    assert torch.allclose(torch.exp(m1.A_log), torch.arange(1, N + 1.0).expand_as(m1.A_log))  # S4D-real
    dt1 = torch.nn.functional.softplus(m1.dt_proj.bias)
    assert dt1.min() >= 1e-3 * 0.999 and dt1.max() <= 0.1 * 1.001
    assert m1.dt_proj.in_features == 256 // 16  # dt_rank auto = ceil(d / 16)


def test_random_init_does_not_copy_attention():
    teacher = make_teacher()
    mixer = build_student(teacher, pattern="MAAA", init="random", conv_init="random").layers[0].mixer
    q = teacher.model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(mixer.in_proj.weight[mixer.in_proj_rows("C")], q)
    assert mixer.conv1d.weight[:, 0, :-1].abs().sum() > 0  # random conv, not identity


def test_unknown_mixer_option_is_named():
    with pytest.raises(ValueError, match="dstate"):
        build_student(make_teacher(), mamba_ratio=0.5, dstate=16)
    with pytest.raises(ValueError, match="mixer must be one of mamba1, mamba2; got 'mamba3'"):
        build_student(make_teacher(), mamba_ratio=0.5, mixer="mamba3")
