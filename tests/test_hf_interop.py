"""The student as a transformers model (models/hf_model.py): Auto classes, transformers' generate on the student's
own caches (equal to the project's loop and to recomputing without a cache), its logits processors against a
reference, pipeline("text-generation"), streamers and stop strings."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, TextStreamer, pipeline

from hybrid_distill.data.tokenizer import load_or_train_tokenizer
from hybrid_distill.models.hf_compat import CACHE_ARG
from hybrid_distill.models import HybridForCausalLM, HybridPretrainedConfig, build_student
from hybrid_distill.models.generation import generate as own_generate
from test_models_common import make_teacher, perturb_, random_ids


def _student(mixer: str = "mamba2", pattern: str = "MAMM", **teacher_overrides) -> HybridForCausalLM:
    student = build_student(make_teacher(**teacher_overrides), pattern=pattern, mixer=mixer, conv_init="random")
    perturb_(student)  # stands in for training: no parameter at a neutral init
    return student.eval()


@pytest.fixture(scope="module")
def tokenized_student(cache_dir):
    """A small random hybrid with the project's tiny tokenizer (pipeline and stop strings need text)."""
    tokenizer = load_or_train_tokenizer(cache_dir / "tokenizers", 2048)
    torch.manual_seed(0)
    teacher = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=2048,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()
    student = build_student(teacher, pattern="MAMA", conv_init="random")
    perturb_(student, scale=0.5)  # far from the random teacher's near-uniform output: varied text
    return student.eval(), tokenizer


# --- loading --------------------------------------------------------------------------------------------------------
def test_auto_classes_load_a_saved_student(tmp_path):
    student = _student("mamba1", tie_word_embeddings=True)
    student.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "hybrid_distill" and "auto_map" not in saved  # no code is run from the directory
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, HybridPretrainedConfig) and config == student.config
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(model) is HybridForCausalLM and model.lm_head.weight is model.embed_tokens.weight
    ids = random_ids(length=6)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, student(ids).logits)

    chosen = AutoModelForCausalLM.from_pretrained(tmp_path, scan_backend="torch_chunked", dtype=torch.bfloat16)
    assert (
        chosen.config.scan_backend == "torch_chunked" and chosen.layers[0].mixer.config.scan_backend == "torch_chunked"
    )
    assert chosen.config.torch_dtype == "bfloat16" and chosen.lm_head.weight.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="does not support quantization_config"):
        AutoModelForCausalLM.from_pretrained(tmp_path, quantization_config={"load_in_8bit": True})


def test_hub_options_and_subfolder_are_accepted(tmp_path):
    """What transformers' Auto classes and pipeline pass along (subfolder, revision, cache_dir, token and whatever
    private keys a release adds) loads a local student instead of failing with each new release."""
    student = _student()
    student.save_pretrained(tmp_path / "sub")
    hub_options = dict(revision="main", cache_dir=str(tmp_path / "hf-cache"), token=None, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tmp_path, subfolder="sub", **hub_options)
    config = AutoConfig.from_pretrained(tmp_path / "sub", revision="main")
    ids = random_ids(length=5)
    with torch.no_grad():
        assert config == student.config and torch.equal(model(ids).logits, student(ids).logits)


def test_checkpoints_saved_before_model_type_still_load(tmp_path):
    student = _student()
    student.save_pretrained(tmp_path)
    old = json.loads((tmp_path / "config.json").read_text())
    for key in ("model_type", "architectures"):
        del old[key]
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert HybridForCausalLM.from_pretrained(tmp_path).config == student.config
    (tmp_path / "config.json").write_text(json.dumps({**old, "model_type": "bamba"}))
    with pytest.raises(ValueError, match="model_type 'bamba' is not a hybrid_distill student"):
        HybridForCausalLM.from_pretrained(tmp_path)


def test_config_view_forwards_reads_and_writes_to_the_hybrid_config():
    student = _student()
    config = student.config
    assert config.pattern == "MAMM" and config.mamba_layers == [0, 2, 3] and config.num_hidden_layers == 4
    assert config.to_dict() == config.hybrid.to_dict() and config.torch_dtype == "float32"
    assert config.dtype == torch.float32 and not config.is_encoder_decoder  # transformers' own fields
    config.scan_backend = "torch_chunked"  # the mixers share the HybridConfig: a switch reaches them
    assert config.hybrid.scan_backend == student.layers[0].mixer.config.scan_backend == "torch_chunked"


# --- forward --------------------------------------------------------------------------------------------------------
def test_forward_speaks_transformers():
    student = _student()
    ids = random_ids(length=7)
    with torch.no_grad():
        out = student(ids, use_cache=True)  # a cache is started, as transformers models do
        assert out.logits.shape == (2, 7, student.config.vocab_size) and out.cache.seqlen == 7
        logits, cache = student(ids[:, :3], use_cache=True, return_dict=False)
        step = student(ids[:, 3:], cache=cache).logits
        torch.testing.assert_close(torch.cat([logits, step], 1), out.logits, rtol=1e-5, atol=1e-5)
        assert out[CACHE_ARG] is out.cache  # in the field where the installed transformers' generate looks
        assert CACHE_ARG not in student(ids)  # no cache asked for, none returned
    with pytest.raises(ValueError, match="does not support position_ids"):
        student(ids, position_ids=torch.arange(7)[None])
    with pytest.raises(ValueError, match="continuing a given cache is not supported"):
        student.generate(ids, cache=student.new_cache(), max_new_tokens=2)


# --- generate -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mixer", ["mamba2", "mamba1"])
def test_greedy_generate_equals_the_own_loop_and_the_uncached_recompute(mixer):
    student = _student(mixer)
    ids = random_ids(batch=2, length=5)
    own = own_generate(student, ids, max_new_tokens=12)
    cached = student.generate(ids, max_new_tokens=12, do_sample=False, output_logits=True, return_dict_in_generate=True)
    uncached = student.generate(
        ids, max_new_tokens=12, do_sample=False, use_cache=False, output_logits=True, return_dict_in_generate=True
    )
    assert torch.equal(cached.sequences, own) and torch.equal(uncached.sequences, own)
    assert len(cached.logits) == 12 and cached.logits[0].shape == (2, student.config.vocab_size)
    for a, b in zip(cached.logits, uncached.logits):  # one recurrent step vs a full parallel pass over the prefix
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    eos = int(own[0, 8])  # row 0 emits it as its 4th token: both stop the row there and pad after it
    assert torch.equal(
        student.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=eos),
        own_generate(student, ids, max_new_tokens=12, eos_token_id=eos),
    )


def test_generate_feeds_one_token_a_step_on_its_cache():
    """generate hands the cache back each step (under `cache` or 5.17's `past_key_values`): after the prefill, one
    new token per forward. Without that it silently recomputes the whole prefix at every step."""
    student = _student()
    ids = random_ids(batch=2, length=5)
    lengths = []
    hook = student.register_forward_pre_hook(
        lambda m, args, kw: lengths.append(kw["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        student.generate(ids, max_new_tokens=4, do_sample=False)
    finally:
        hook.remove()
    assert lengths == [5, 1, 1, 1]


def test_beam_search_reorders_the_cache():
    student = _student("mamba2", pattern="MAMA")
    ids = random_ids(batch=2, length=4)
    kw = dict(max_new_tokens=10, num_beams=3, do_sample=False, num_return_sequences=2)
    cached = student.generate(**kw, input_ids=ids)
    assert cached.shape == (4, 14)
    assert torch.equal(cached, student.generate(**kw, input_ids=ids, use_cache=False))
    greedy = own_generate(student, ids, max_new_tokens=10)
    assert not torch.equal(cached[::2], greedy)  # beams found other sequences: the reordering was exercised


def _greedy_with_repetition_penalty(student, ids, new_tokens: int, penalty: float) -> torch.Tensor:
    """Reference: a full forward per token; the logits of every token seen so far divided by the penalty (multiplied
    when negative), as in CTRL (Keskar et al. 2019), then argmax."""
    for _ in range(new_tokens):
        with torch.no_grad():
            logits = student(ids).logits[:, -1]  # (B, V)
        seen = logits.gather(1, ids)
        logits = logits.scatter(1, ids, torch.where(seen > 0, seen / penalty, seen * penalty))
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], 1)
    return ids


def test_repetition_penalty_equals_its_reference():
    student = _student()
    ids = random_ids(batch=2, length=6)
    penalised = student.generate(ids, max_new_tokens=12, do_sample=False, repetition_penalty=3.0)
    assert torch.equal(penalised, _greedy_with_repetition_penalty(student, ids, 12, 3.0))
    assert not torch.equal(penalised, student.generate(ids, max_new_tokens=12, do_sample=False))


def _bigrams(row: torch.Tensor) -> list[tuple[int, int]]:
    return list(zip(row[:-1].tolist(), row[1:].tolist()))


def test_no_repeat_ngram_and_min_new_tokens():
    student = _student()
    ids = random_ids(batch=2, length=6)
    plain = student.generate(ids, max_new_tokens=40, do_sample=False)
    assert any(len(set(_bigrams(row))) < len(_bigrams(row)) for row in plain)  # greedy repeats a bigram here...
    blocked = student.generate(ids, max_new_tokens=40, do_sample=False, no_repeat_ngram_size=2)
    assert all(len(set(_bigrams(row))) == len(_bigrams(row)) for row in blocked)  # ...which the option forbids

    eos = int(plain[0, 6])  # row 0's first new token
    early = student.generate(ids[:1], max_new_tokens=8, do_sample=False, eos_token_id=eos)
    late = student.generate(ids[:1], max_new_tokens=8, do_sample=False, eos_token_id=eos, min_new_tokens=5)
    assert early.shape[1] == 7 and late.shape[1] >= 11 and eos not in late[0, 6:11].tolist()


def test_sampling_is_seeded_and_top_k_1_is_greedy():
    student = _student()
    ids = random_ids(batch=2, length=6)
    greedy = student.generate(ids, max_new_tokens=10, do_sample=False)
    sample = dict(max_new_tokens=10, do_sample=True, temperature=1.3, top_p=0.9)
    torch.manual_seed(3)
    a = student.generate(ids, **sample)
    torch.manual_seed(3)
    assert torch.equal(a, student.generate(ids, **sample)) and not torch.equal(a, greedy)
    assert torch.equal(student.generate(ids, max_new_tokens=10, do_sample=True, top_k=1), greedy)


def test_pipeline_streamer_and_stop_strings(tokenized_student, tmp_path):
    student, tokenizer = tokenized_student
    prompt = "To be, or not to be"
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    greedy = own_generate(student, ids, max_new_tokens=12)
    expected = tokenizer.decode(greedy[0, ids.shape[1] :], skip_special_tokens=True)
    assert expected.strip()  # the check below compares real text

    pipe = pipeline("text-generation", model=student, tokenizer=tokenizer)
    got = pipe(prompt, max_new_tokens=12, do_sample=False, return_full_text=False)[0]["generated_text"]
    assert got == expected
    student.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    by_path = pipeline("text-generation", model=str(tmp_path))  # AutoModelForCausalLM + AutoTokenizer
    assert by_path(prompt, max_new_tokens=12, do_sample=False, return_full_text=False)[0]["generated_text"] == got

    pieces = []

    class Collect(TextStreamer):
        def on_finalized_text(self, text, stream_end=False):
            pieces.append(text)

    student.generate(ids, max_new_tokens=12, do_sample=False, streamer=Collect(tokenizer, skip_prompt=True))
    assert "".join(pieces).strip() == expected.strip()

    stop = expected.strip()[-1]  # a character of the greedy text: generation ends once the text reaches it
    out = student.generate(ids, max_new_tokens=12, do_sample=False, stop_strings=[stop], tokenizer=tokenizer)
    text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert text.endswith(stop) and expected.startswith(text) and out.shape[1] <= greedy.shape[1]
