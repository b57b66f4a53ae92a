"""The mixer registry: a mixer defined and registered here, outside the package, builds, runs with a cache, saves,
loads and converts like the Mamba ones; options are checked per mixer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

import pytest
import torch
from torch import nn

from hybrid_distill.errors import UserError
from hybrid_distill.export.bamba import check_exportable
from hybrid_distill.models import (
    Attention,
    HybridConfig,
    HybridForCausalLM,
    MixerSpec,
    build_student,
    convert_student,
    register,
)
from hybrid_distill.models.mixers import registry
from test_models_common import make_teacher, perturb_, random_ids


@dataclass
class DecayOptions:
    decay: float = 1.0

    def resolve(self, config: HybridConfig) -> None:
        if not 0 < self.decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {self.decay!r}")


class DecayState(NamedTuple):
    total: torch.Tensor  # (B, H*hd): the decayed sum so far


class DecayedSumMixer(nn.Module):
    """y_t = out(sum_{s <= t} decay^(t-s) in(h_s)): the smallest stateful mixer."""

    def __init__(self, config: HybridConfig):
        super().__init__()
        self.decay = config.options.decay
        width = config.num_attention_heads * config.head_dim
        self.in_proj = nn.Linear(config.hidden_size, width, bias=config.attention_bias)
        self.out_proj = nn.Linear(width, config.hidden_size, bias=config.attention_bias)

    def forward(self, hidden, state=None, use_cache=False, rope=None):
        x = self.in_proj(hidden)  # (B, T, D)
        total = x.new_zeros(x.shape[0], x.shape[2]) if state is None else state.total  # (B, D)
        ys = []
        for t in range(x.shape[1]):
            total = self.decay * total + x[:, t]
            ys.append(total)
        return self.out_proj(torch.stack(ys, 1)), (DecayState(total) if use_cache else None)


@torch.no_grad()
def decayed_sum_from_attention(mixer: DecayedSumMixer, attention: nn.Module) -> None:
    mixer.in_proj.load_state_dict(attention.q_proj.state_dict())
    mixer.out_proj.load_state_dict(attention.o_proj.state_dict())


DECAYED_SUM = MixerSpec("decayed_sum", DecayedSumMixer, DecayOptions, decayed_sum_from_attention)


@pytest.fixture
def registered(monkeypatch):
    """DECAYED_SUM registered for one test (the registry is restored afterwards)."""
    monkeypatch.setattr(registry, "_specs", dict(registry.specs()))
    register(DECAYED_SUM)


def test_a_registered_mixer_builds_runs_caches_saves_and_converts(registered, tmp_path):
    teacher = make_teacher()
    student = build_student(teacher, pattern="MAMA", mixer="decayed_sum", decay=0.5).eval()
    assert [type(b.mixer) for b in student.layers] == [DecayedSumMixer, Attention] * 2
    assert torch.equal(student.layers[0].mixer.in_proj.weight, teacher.model.layers[0].self_attn.q_proj.weight)
    assert student.layers[0].mixer.decay == 0.5

    ids = random_ids()
    with torch.no_grad():
        full = student(ids).logits  # (B, T, V)
        cache = student.new_cache()
        student(ids[:, :-1], cache=cache)
        last = student(ids[:, -1:], cache=cache).logits[:, -1]
    assert isinstance(cache.layers[0], DecayState)
    torch.testing.assert_close(last, full[:, -1], rtol=1e-5, atol=1e-5)

    perturb_(student)
    student.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["mixer"] == "decayed_sum" and saved["decay"] == 0.5 and "d_conv" not in saved
    loaded = HybridForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, student(ids).logits)

    attention = loaded.layers[1].mixer
    convert_student(loaded, pattern="MMMA")
    assert isinstance(loaded.layers[1].mixer, DecayedSumMixer)
    assert torch.equal(loaded.layers[1].mixer.out_proj.weight, attention.o_proj.weight)


def test_options_belong_to_their_mixer(registered):
    teacher = make_teacher()
    with pytest.raises(ValueError, match=r"mixer 'decayed_sum' does not take option\(s\) d_conv; its options: decay"):
        build_student(teacher, mamba_ratio=0.5, mixer="decayed_sum", d_conv=4)
    with pytest.raises(ValueError, match=r"mixer 'mamba2' does not take option\(s\) dt_rank"):
        build_student(teacher, mamba_ratio=0.5, mixer="mamba2", dt_rank=4)
    with pytest.raises(ValueError, match=r"mixer 'mamba1' does not take option\(s\) A_init_range"):
        build_student(teacher, mamba_ratio=0.5, mixer="mamba1", A_init_range=(1.0, 2.0))
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\], got 2"):
        build_student(teacher, mamba_ratio=0.5, mixer="decayed_sum", decay=2)
    assert build_student(teacher, mamba_ratio=0.5, mixer="mamba1", dt_rank=3).layers[0].mixer.dt_proj.in_features == 3


def test_a_mixer_without_an_attention_init_builds_only_at_random(monkeypatch):
    monkeypatch.setattr(registry, "_specs", dict(registry.specs()))
    register(MixerSpec("decayed_sum", DecayedSumMixer, DecayOptions))
    with pytest.raises(ValueError, match="mixer 'decayed_sum' cannot start from attention; use init='random'"):
        build_student(make_teacher(), mamba_ratio=0.5, mixer="decayed_sum")
    student = build_student(make_teacher(), mamba_ratio=0.5, mixer="decayed_sum", init="random")
    assert isinstance(student.layers[0].mixer, DecayedSumMixer)


def test_registry_refuses_clashes_and_the_export_refuses_the_mixer(registered):
    with pytest.raises(ValueError, match="registered twice"):
        register(DECAYED_SUM)

    @dataclass
    class Clashing:
        pattern: str = "M"  # a HybridConfig field: config.json could not tell them apart

    with pytest.raises(ValueError, match="option\\(s\\) pattern clash with HybridConfig fields"):
        register(MixerSpec("clashing", DecayedSumMixer, Clashing))
    student = build_student(make_teacher(), mamba_ratio=0.5, mixer="decayed_sum")
    with pytest.raises(UserError, match="student option mixer='decayed_sum' cannot be exported to Bamba"):
        check_exportable(student)
