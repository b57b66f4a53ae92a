"""The small BPE tokenizer: lossless round trip, a Llama-3-like chat template, and an on-disk
cache keyed by vocabulary size and corpus."""

import pytest
from transformers import AutoTokenizer

from hybrid_distill.data import tokenizer as tokenizer_module
from hybrid_distill.data.chat_tasks import chat_rows
from hybrid_distill.data.corpus import shakespeare_documents
from hybrid_distill.data.tokenizer import BOS, EOS, ROLE_MARKERS, load_or_train_tokenizer, train_tokenizer

TEXTS = [shakespeare_documents()["train"][0]["text"], *[m["content"] for r in chat_rows(200, 0) for m in r["messages"]]]
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 12 + 30?"},
    {"role": "assistant", "content": "42"},
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=512)


@pytest.mark.parametrize("text", ["Now, fair Hippolyta, our nuptial hour", "Sort: 17, 3, 250\n\nnaïve — café", "  x  "])
def test_round_trip_is_lossless(tokenizer, text):
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_vocabulary_and_digit_split(tokenizer):
    assert len(tokenizer) == 512
    assert [
        tokenizer.convert_ids_to_tokens(i) for i in tokenizer("2025", add_special_tokens=False)["input_ids"]
    ] == list("2025")
    assert tokenizer.pad_token_id not in (None, tokenizer.eos_token_id)


def test_chat_template_renders_roles_like_llama3(tokenizer):
    text = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert text == f"{BOS}<|system|>\nBe brief.{EOS}<|user|>\nWhat is 12 + 30?{EOS}<|assistant|>\n42{EOS}"
    prompt = tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert text.startswith(prompt) and prompt.endswith("<|assistant|>\n")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    markers = [tokenizer.convert_tokens_to_ids(m) for m in ROLE_MARKERS]
    assert [i for i in ids if i in markers] == markers  # each marker is one token, in turn order
    with pytest.raises(Exception, match="unsupported chat role: tool"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_saved_tokenizer_reloads_identically(tmp_path):
    tokenizer = train_tokenizer(TEXTS, vocab_size=300, out_dir=tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.apply_chat_template(CONVERSATION, tokenize=False) == tokenizer.apply_chat_template(
        CONVERSATION, tokenize=False
    )
    assert reloaded(TEXTS[1])["input_ids"] == tokenizer(TEXTS[1])["input_ids"]


def test_cache_is_reused_and_keyed_by_vocab_and_corpus(tmp_path, monkeypatch):
    first = load_or_train_tokenizer(tmp_path, vocab_size=400, texts=TEXTS)
    monkeypatch.setattr(tokenizer_module, "train_tokenizer", lambda *a: pytest.fail("cache not reused"))
    again = load_or_train_tokenizer(tmp_path, vocab_size=400, texts=TEXTS)
    assert again.name_or_path == first.name_or_path and again.get_vocab() == first.get_vocab()
    monkeypatch.undo()
    other_vocab = load_or_train_tokenizer(tmp_path, vocab_size=300, texts=TEXTS)
    other_corpus = load_or_train_tokenizer(tmp_path, vocab_size=400, texts=TEXTS[:50])
    names = {t.name_or_path for t in (first, other_vocab, other_corpus)}
    assert len(names) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        n.rsplit("/", 1)[-1] for n in names
    )  # no temp dirs left
