"""Tokenisation: labels cover exactly the assistant responses (for our template and a different
Llama-3-like one), over-long rows are counted and skipped, results are cached, text is packed."""

import os
from pathlib import Path

import pytest
from datasets import Dataset

from hybrid_distill.data import tokenize as tokenize_module
from hybrid_distill.data.chat_tasks import chat_rows, preference_rows
from hybrid_distill.data.corpus import shakespeare_documents
from hybrid_distill.data.loaders import load_chat_dataset
from hybrid_distill.data.tokenize import IGNORE_INDEX, pack_text, tokenize_chat, tokenize_preference, tokenize_prompts
from hybrid_distill.data.tokenizer import train_tokenizer

ULTRACHAT = Path(__file__).parent / "fixtures" / "ultrachat_sample.jsonl"

# Meta-Llama-3-8B-Instruct's chat template, verbatim: stands in for a real checkpoint's template
# (with our tokenizer its header and <|eot_id|> markers are plain text, which must not matter).
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' "
    "+ message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    plays = shakespeare_documents()["train"]["text"][:2]
    return train_tokenizer([*plays, *(m["content"] for r in chat_rows(300, 0) for m in r["messages"])], vocab_size=512)


@pytest.fixture
def llama3(tokenizer):
    original = tokenizer.chat_template
    tokenizer.chat_template = LLAMA3_TEMPLATE
    yield tokenizer
    tokenizer.chat_template = original


def trained_text(tokenizer, labels) -> str:
    return tokenizer.decode([t for t in labels if t != IGNORE_INDEX])


def prompt_length(labels) -> int:
    return next(i for i, t in enumerate(labels) if t != IGNORE_INDEX)


@pytest.mark.parametrize("template", ["own", "llama3"])
def test_labels_cover_exactly_the_assistant_turns(request, tokenizer, template):
    tok = request.getfixturevalue("llama3") if template == "llama3" else tokenizer
    end_of_turn = "<|eot_id|>" if template == "llama3" else tok.eos_token
    ds = load_chat_dataset(ULTRACHAT)  # row 1: system + two user/assistant rounds
    out = tokenize_chat(ds, tok, max_length=256)
    for row, messages in zip(out, ds["messages"]):
        assert len(row["input_ids"]) == len(row["labels"])
        labelled = [i for i, t in enumerate(row["labels"]) if t != IGNORE_INDEX]
        assert all(row["labels"][i] == row["input_ids"][i] for i in labelled)
        responses = [m["content"] + end_of_turn for m in messages if m["role"] == "assistant"]
        assert trained_text(tok, row["labels"]) == "".join(responses)
        first_prompt = tok.apply_chat_template(
            messages[: 1 + (messages[0]["role"] == "system")], tokenize=False, add_generation_prompt=True
        )
        assert tok.decode(row["input_ids"][: prompt_length(row["labels"])]) == first_prompt


def test_template_without_prefix_property_is_refused(tokenizer):
    ds = Dataset.from_list(chat_rows(2, 0))
    original, tokenizer.chat_template = tokenizer.chat_template, "{{ messages[-1]['content'] }}"
    try:
        with pytest.raises(ValueError, match="does not render conversation prefixes as string prefixes"):
            tokenize_chat(ds, tokenizer, max_length=128)
    finally:
        tokenizer.chat_template = original


def test_chat_tasks_fit_in_short_sequences(tokenizer):
    lengths = [len(ids) for ids in tokenize_chat(Dataset.from_list(chat_rows(500, 0)), tokenizer, 1024)["input_ids"]]
    assert max(lengths) <= 96  # with a 512-token vocabulary; shorter still at the default 2048


def test_overlong_rows_are_counted_and_skipped(tokenizer):
    ds = Dataset.from_list(chat_rows(40, 0))
    lengths = [
        len(tokenizer(tokenizer.apply_chat_template(m, tokenize=False), add_special_tokens=False)["input_ids"])
        for m in ds["messages"]
    ]
    limit = sorted(lengths)[len(lengths) // 2]
    too_long = sum(length > limit for length in lengths)
    assert 0 < too_long < len(ds)
    with pytest.warns(
        UserWarning, match=f"tokenize_chat: skipped {too_long} of 40 rows longer than max_length={limit}"
    ):
        out = tokenize_chat(ds, tokenizer, max_length=limit)
    assert sorted(map(len, out["input_ids"])) == sorted(n for n in lengths if n <= limit)


def test_preference_pairs_share_the_prompt_and_label_only_the_answer(tokenizer):
    rows = preference_rows(20, 0)
    out = tokenize_preference(Dataset.from_list(rows), tokenizer, max_length=128)
    assert len(out) == 20
    for row, pair in zip(out, rows):
        cut = prompt_length(row["chosen_labels"])
        assert cut == prompt_length(row["rejected_labels"])
        assert row["chosen_input_ids"][:cut] == row["rejected_input_ids"][:cut]
        assert trained_text(tokenizer, row["chosen_labels"]) == pair["chosen"][-1]["content"] + tokenizer.eos_token
        assert trained_text(tokenizer, row["rejected_labels"]) == pair["rejected"][-1]["content"] + tokenizer.eos_token
    short = min(len(r["chosen_input_ids"]) for r in out)
    with pytest.warns(UserWarning, match="tokenize_preference: skipped"):
        assert len(tokenize_preference(Dataset.from_list(rows), tokenizer, max_length=short)) < 20


def test_prompts_end_with_the_generation_prompt(tokenizer):
    rows = chat_rows(5, 0)
    out = tokenize_prompts(Dataset.from_list(rows), tokenizer, max_length=128)
    for row, original in zip(out, rows):
        assert row["prompt_messages"] == original["messages"][:1]
        assert row["reference"] == original["messages"][1]["content"]
        assert tokenizer.decode(row["input_ids"]).endswith(
            f"{original['messages'][0]['content']}<|eos|><|assistant|>\n"
        )


def test_second_call_reuses_the_cache(tokenizer, tmp_path, monkeypatch):
    ds = Dataset.from_list(chat_rows(30, 0))
    first = tokenize_chat(ds, tokenizer, max_length=128, cache_dir=tmp_path)
    [cache_file] = [f["filename"] for f in first.cache_files]
    assert os.path.dirname(cache_file) == str(tmp_path)
    modified = os.path.getmtime(cache_file)
    monkeypatch.setattr(tokenize_module, "_chat_batch", lambda *a, **k: pytest.fail("recomputed instead of cached"))
    second = tokenize_chat(ds, tokenizer, max_length=128, cache_dir=tmp_path)
    assert second.cache_files == first.cache_files and os.path.getmtime(cache_file) == modified
    assert second["input_ids"] == first["input_ids"]
    monkeypatch.undo()
    other = tokenize_chat(ds, tokenizer, max_length=127, cache_dir=tmp_path)  # new settings -> new cache file
    assert other.cache_files != first.cache_files


def test_pack_text_makes_full_blocks_with_labels(tokenizer):
    docs = Dataset.from_dict({"text": ["To be, or not to be.", "That is the question. " * 20]})
    out = pack_text(docs, tokenizer, seq_len=16)
    stream = [t for text in docs["text"] for t in tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]]
    assert len(out) == len(stream) // 16
    assert all(len(ids) == 16 for ids in out["input_ids"]) and out["labels"] == out["input_ids"]
    assert sum(out["input_ids"], []) == stream[: len(out) * 16]
    assert tokenizer.decode(out[0]["input_ids"]).startswith("<|bos|>To be, or not to be.<|eos|><|bos|>That")
