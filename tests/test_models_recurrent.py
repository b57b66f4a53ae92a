"""Parallel forward == token-by-token recurrent decoding == prefill then decode; the own generate()'s options
(models/generation.py; transformers' model.generate is tested in test_hf_interop.py)."""

import pytest
import torch

from hybrid_distill.models import build_student, next_token
from hybrid_distill.models.generation import generate
from test_models_common import make_teacher, perturb_, random_ids


def _student(mixer: str, pattern: str = "MAMM"):
    # random conv and a moved model: conv state and every new parameter matter, nothing sits at a neutral init
    student = build_student(make_teacher(), pattern=pattern, mixer=mixer, conv_init="random")
    perturb_(student)
    return student.eval()


@pytest.mark.parametrize("mixer", ["mamba2", "mamba1"])
def test_recurrent_decoding_matches_parallel_forward(mixer):
    student = _student(mixer)
    ids = random_ids(batch=2, length=10)
    with torch.no_grad():
        parallel = student(ids).logits  # (B, T, V)
        cache = student.new_cache()
        steps = [student(ids[:, t : t + 1], cache=cache).logits for t in range(ids.shape[1])]
    assert cache.seqlen == ids.shape[1]
    torch.testing.assert_close(torch.cat(steps, dim=1), parallel, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mixer", ["mamba2", "mamba1"])
def test_prefill_then_decode_matches_parallel_forward(mixer):
    student = _student(mixer)
    ids = random_ids(batch=2, length=11)
    with torch.no_grad():
        parallel = student(ids).logits
        cache = student.new_cache()
        prefill = student(ids[:, :6], cache=cache).logits  # prompt longer than the conv kernel
        chunk = student(ids[:, 6:9], cache=cache).logits  # a multi-token block after a prefix (speculative verify)
        steps = [student(ids[:, t : t + 1], cache=cache).logits for t in (9, 10)]
    torch.testing.assert_close(torch.cat([prefill, chunk, *steps], dim=1), parallel, rtol=1e-4, atol=1e-5)


def test_greedy_generate_continues_the_parallel_argmax():
    student = _student("mamba2")
    prompt = random_ids(batch=2, length=4)
    out = generate(student, prompt, max_new_tokens=6)
    assert out.shape == (2, 10) and torch.equal(out[:, :4], prompt)
    with torch.no_grad():  # every generated token is the argmax of a full parallel pass over its prefix
        logits = student(out[:, :-1]).logits
    assert torch.equal(logits[:, 3:].argmax(-1), out[:, 4:])


def test_sampling_is_reproducible_with_a_generator_and_top_k_1_is_greedy():
    student = _student("mamba1")
    prompt = random_ids(batch=3, length=4)
    kw = dict(max_new_tokens=8, do_sample=True, temperature=1.5)
    a = generate(student, prompt, generator=torch.Generator().manual_seed(7), **kw)
    b = generate(student, prompt, generator=torch.Generator().manual_seed(7), **kw)
    c = generate(student, prompt, generator=torch.Generator().manual_seed(8), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    greedy = generate(student, prompt, max_new_tokens=8)
    assert torch.equal(generate(student, prompt, top_k=1, generator=torch.Generator().manual_seed(9), **kw), greedy)
    assert not torch.equal(a, greedy)


def test_eos_stops_rows_and_pads_after_it():
    student = _student("mamba2")
    prompt = random_ids(batch=2, length=4)
    free = generate(student, prompt, max_new_tokens=6)
    eos = int(free[0, 6])  # row 0 emits this token as its 3rd new token
    out = generate(student, prompt, max_new_tokens=6, eos_token_id=[eos, 999])
    stops = []
    for row in range(2):  # each row equals free generation up to its first EOS, then pad_token_id (0)
        hits = (free[row, 4:] == eos).nonzero()
        stop = 4 + (int(hits[0]) + 1 if len(hits) else 6)
        stops.append(stop)
        assert torch.equal(out[row, :stop], free[row, :stop]) and (out[row, stop:] == 0).all()
    assert out.shape[1] == max(stops)  # generation ends once every row has finished
    assert generate(student, prompt[:1], max_new_tokens=6, eos_token_id=eos).shape[1] == 7


def test_next_token_top_k_and_top_p_restrict_the_support():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(2000, 4)
    g = torch.Generator().manual_seed(0)
    assert set(next_token(logits, True, top_k=2, generator=g).tolist()) == {0, 1}
    assert set(next_token(logits, True, top_p=0.7, generator=g).tolist()) == {0, 1}  # 0.5 < 0.7 <= 0.8
    assert set(next_token(logits, True, top_p=0.5, generator=g).tolist()) == {0}
    assert set(next_token(logits, True, generator=g).tolist()) == {0, 1, 2, 3}
    freq = (next_token(logits, True, generator=g) == 0).float().mean()
    assert 0.4 < freq < 0.6
    assert torch.equal(next_token(logits, False), torch.zeros(2000, dtype=torch.long))


def test_padding_is_refused_where_it_would_be_wrong():
    student = _student("mamba2")
    ids = random_ids(batch=2, length=5)
    left_padded = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    with pytest.raises(ValueError, match="left padding"):
        student(ids, attention_mask=left_padded)
    right_padded = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    with torch.no_grad():  # accepted and ignored: causal layers never look at later (padded) positions
        assert torch.equal(student(ids, attention_mask=right_padded).logits, student(ids).logits)
    with pytest.raises(ValueError, match="engine='eager' needs unpadded prompts"):  # the static engine takes them
        generate(student, ids, max_new_tokens=2, attention_mask=right_padded, engine="eager")
    with pytest.raises(ValueError, match="left padding"):
        generate(student, ids, max_new_tokens=2, attention_mask=left_padded)
    with pytest.raises(ValueError, match="top_p"):
        generate(student, ids, max_new_tokens=2, do_sample=True, top_p=1.5)
