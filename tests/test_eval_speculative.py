"""Speculative decoding with a hybrid target: output equals the target's own greedy decoding for any draft, and
rollback (snapshot/restore) of hybrid and HF decoders is exact."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from hybrid_distill.eval.decoders import HFDecoder, HybridDecoder
from hybrid_distill.eval.speculative import speculative_benchmark, speculative_generate
from hybrid_distill.models.generation import generate
from hybrid_distill.models import build_student

CONFIG = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
)


def llama(seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**CONFIG)).eval()


@pytest.fixture(scope="module")
def models():
    teacher = llama(0)
    target = build_student(teacher, mamba_ratio=0.5).eval()  # "MAMA": SSM states that cannot be cropped
    noisy = copy.deepcopy(target)  # a draft that agrees with the target often, not always
    with torch.no_grad():
        noisy.lm_head.weight.add_(0.6 * noisy.lm_head.weight.std() * torch.randn_like(noisy.lm_head.weight))
    unrelated = build_student(llama(1), mamba_ratio=0.75).eval()
    return {"target": target, "teacher": teacher, "noisy": noisy, "unrelated": unrelated, "unrelated_hf": llama(2)}


@pytest.mark.parametrize("k, engine", [(1, "static"), (4, "static"), (4, "eager")])
def test_output_equals_greedy_decoding_for_every_draft(models, k, engine):
    target = models["target"]
    prompt = torch.randint(0, 64, (1, 9), generator=torch.Generator().manual_seed(k))
    reference = generate(target, prompt, max_new_tokens=24, engine="eager")
    rates = {}
    for name in ("target", "noisy", "unrelated", "unrelated_hf"):
        output, stats = speculative_generate(target, models[name], prompt, 24, k, engine=engine)
        assert torch.equal(output, reference), name
        assert stats.committed == 24 and stats.committed == stats.accepted + stats.rounds
        rates[name] = stats.acceptance_rate
        if name == "target":
            assert stats.recomputed == 0  # every proposal accepted: no rollback
    assert rates["target"] == 1.0
    assert 0.0 < rates["noisy"] < 1.0  # the partial-acceptance path (rollback of target and draft) ran
    assert rates["unrelated"] < 0.3 and rates["unrelated_hf"] < 0.3


def test_stops_at_eos_like_generate(models):
    target = models["target"]
    prompt = torch.randint(0, 64, (1, 5), generator=torch.Generator().manual_seed(7))
    free = generate(target, prompt, max_new_tokens=30)[0, 5:]
    eos = int(free[6])  # a token the target emits: generation must stop at its first occurrence
    reference = generate(target, prompt, max_new_tokens=30, eos_token_id=eos)
    output, stats = speculative_generate(target, models["noisy"], prompt, 30, 4, eos_token_id=eos)
    assert torch.equal(output, reference) and int(output[0, -1]) == eos and output.shape[1] < 5 + 30


def test_one_sequence_at_a_time(models):
    with pytest.raises(ValueError, match="one sequence at a time"):
        speculative_generate(models["target"], models["noisy"], torch.zeros(2, 3, dtype=torch.long), 4)


@pytest.mark.parametrize("kind", ["hybrid", "hf"])
def test_decoder_rollback_is_exact(models, kind):
    model = models["target"] if kind == "hybrid" else models["teacher"]
    decoder = HybridDecoder(model) if kind == "hybrid" else HFDecoder(model)
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(3))
    decoder.feed(ids[:, :5])
    snapshot = decoder.snapshot()
    first = decoder.feed(ids[:, 5:9])
    decoder.feed(ids[:, 9:])  # tokens to forget
    decoder.restore(snapshot)
    assert decoder.length == 5
    torch.testing.assert_close(decoder.feed(ids[:, 5:9]), first, rtol=0, atol=0)
    full = model(ids[:, :9]).logits[:, 5:9].float()  # and it is what the model computes without a cache
    torch.testing.assert_close(first, full, rtol=1e-4, atol=1e-4)


def test_benchmark_reports_acceptance_and_speedup(models):
    prompts = [torch.randint(0, 64, (1, 6), generator=torch.Generator().manual_seed(s)) for s in range(2)]
    result = speculative_benchmark(models["target"], models["target"], prompts, 12, 3)
    assert result["exact_match"] and result["acceptance_rate"] == 1.0 and result["committed"] == 24
    assert result["speedup"] == pytest.approx(result["plain_seconds"] / result["speculative_seconds"])
