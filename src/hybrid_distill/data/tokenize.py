"""Tokenisation with `datasets.map` (batched, cached): chat SFT rows, preference pairs, prompts
for generation, and packed text blocks.

Conventions for every output: `input_ids` and `labels` have the same length and are *not*
shifted (labels[t] = input_ids[t] where the loss applies, -100 elsewhere; the loss shifts, as in
HF transformers). Chat labels cover the assistant responses including their end-of-turn token.

Works with any fast `PreTrainedTokenizerBase` whose chat template renders a conversation's
prefix as a prefix of the string (true for Llama-3, our BPE and most templates): response
spans are found by rendering prefixes, and tokens are assigned by their character offsets.

Rows longer than `max_length` tokens are dropped and counted (`warnings.warn` gives the count).

Caching: with `cache_dir`, each result is written to `cache_dir/<fingerprint>.arrow`, where the
fingerprint hashes the input dataset's fingerprint, the tokenizer (vocabulary, merges, template)
and the arguments; a second call with the same inputs loads that file instead of recomputing.
"""

import warnings
from collections.abc import Callable
from itertools import chain, compress
from pathlib import Path

from datasets import Dataset
from datasets.fingerprint import Hasher
from transformers import PreTrainedTokenizerBase

from hybrid_distill.data.schemas import Message, prompt_turns

IGNORE_INDEX = -100
CODE_VERSION = "1"  # bump when the encoding below changes, to invalidate cached results
Span = tuple[int, int]  # [start, end) character offsets


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Content hash of a fast tokenizer: vocabulary, merges, special tokens and chat template."""
    if not tokenizer.is_fast:
        raise TypeError(f"{type(tokenizer).__name__} is not a fast tokenizer; character offsets are needed")
    return Hasher.hash((tokenizer.backend_tokenizer.to_str(), tokenizer.chat_template, tokenizer.special_tokens_map))


def _cached_map(ds: Dataset, function: Callable, cache_dir: str | None, desc: str, **fn_kwargs) -> Dataset:
    """`ds.map(function, batched=True)` replacing all columns, cached under a content fingerprint
    of (input dataset, tokenizer, other keyword arguments)."""
    tokenizer = fn_kwargs["tokenizer"]
    settings = sorted((k, v) for k, v in fn_kwargs.items() if k != "tokenizer")
    fingerprint = Hasher.hash((CODE_VERSION, desc, ds._fingerprint, tokenizer_fingerprint(tokenizer), settings))
    cache_file = None
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        cache_file = str(Path(cache_dir) / f"{fingerprint}.arrow")
    return ds.map(
        function,
        batched=True,
        fn_kwargs=fn_kwargs,
        remove_columns=ds.column_names,
        cache_file_name=cache_file,
        load_from_cache_file=True,
        new_fingerprint=fingerprint,
        desc=desc,
    )


def _warn_skipped(before: int, after: int, what: str, max_length: int) -> None:
    if after < before:
        warnings.warn(
            f"{what}: skipped {before - after} of {before} rows longer than max_length={max_length} tokens",
            stacklevel=2,
        )


def render_with_response_spans(
    tokenizer: PreTrainedTokenizerBase, messages: list[Message], last_turn_only: bool = False
) -> tuple[str, list[Span]]:
    """The rendered conversation and the character spans of its assistant responses (from the
    end of the generation prompt to the end of the turn, end-of-turn token included)."""

    def render(turns: list[Message], generation_prompt: bool = False) -> str:
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=generation_prompt)

    text = render(messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or (last_turn_only and i != len(messages) - 1):
            continue
        prompt, turn = render(messages[:i], generation_prompt=True), render(messages[: i + 1])
        if not (turn.startswith(prompt) and text.startswith(turn)):
            raise ValueError(
                f"the chat template of {tokenizer.name_or_path!r} does not render conversation prefixes "
                "as string prefixes, so assistant responses cannot be located for label masking"
            )
        spans.append((len(prompt), len(turn)))
    return text, spans


def encode_with_labels(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], spans: list[list[Span]]
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of each text, and labels = ids on tokens overlapping a span, -100 elsewhere."""
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    labels = [
        [
            token if any(s < end and e > start for start, end in row_spans) else IGNORE_INDEX
            for token, (s, e) in zip(ids, offsets)
        ]
        for ids, offsets, row_spans in zip(encoded["input_ids"], encoded["offset_mapping"], spans)
    ]
    return encoded["input_ids"], labels


def _encode_conversations(tokenizer, conversations, last_turn_only: bool):
    texts, spans = zip(*(render_with_response_spans(tokenizer, m, last_turn_only) for m in conversations))
    return encode_with_labels(tokenizer, list(texts), list(spans))


def _chat_batch(batch: dict, tokenizer: PreTrainedTokenizerBase, max_length: int) -> dict:
    input_ids, labels = _encode_conversations(tokenizer, batch["messages"], last_turn_only=False)
    keep = [len(ids) <= max_length for ids in input_ids]
    return {"input_ids": list(compress(input_ids, keep)), "labels": list(compress(labels, keep))}


def tokenize_chat(
    ds: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int, cache_dir: str | None = None
) -> Dataset:
    """Chat rows (`messages`) -> `input_ids`, `labels` (loss on every assistant turn only)."""
    out = _cached_map(ds, _chat_batch, cache_dir, "tokenize chat", tokenizer=tokenizer, max_length=max_length)
    _warn_skipped(len(ds), len(out), "tokenize_chat", max_length)
    return out


def _preference_batch(batch: dict, tokenizer: PreTrainedTokenizerBase, max_length: int) -> dict:
    chosen_ids, chosen_labels = _encode_conversations(tokenizer, batch["chosen"], last_turn_only=True)
    rejected_ids, rejected_labels = _encode_conversations(tokenizer, batch["rejected"], last_turn_only=True)
    keep = [max(len(c), len(r)) <= max_length for c, r in zip(chosen_ids, rejected_ids)]
    columns = {
        "chosen_input_ids": chosen_ids,
        "chosen_labels": chosen_labels,
        "rejected_input_ids": rejected_ids,
        "rejected_labels": rejected_labels,
    }
    return {name: list(compress(values, keep)) for name, values in columns.items()}


def tokenize_preference(
    ds: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int, cache_dir: str | None = None
) -> Dataset:
    """Normalised preference rows -> `chosen_input_ids/labels`, `rejected_input_ids/labels`; both
    share the prompt tokens, labels cover only the final (compared) assistant turn; a pair is
    dropped if either side exceeds `max_length`."""
    out = _cached_map(
        ds, _preference_batch, cache_dir, "tokenize preference", tokenizer=tokenizer, max_length=max_length
    )
    _warn_skipped(len(ds), len(out), "tokenize_preference", max_length)
    return out


def _prompt_batch(batch: dict, tokenizer: PreTrainedTokenizerBase, max_length: int) -> dict:
    prompts = [prompt_turns(m) for m in batch["messages"]]
    references = [m[len(p)]["content"] for m, p in zip(batch["messages"], prompts)]
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    input_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    keep = [len(ids) <= max_length for ids in input_ids]
    columns = {"prompt_messages": prompts, "reference": references, "input_ids": input_ids}
    return {name: list(compress(values, keep)) for name, values in columns.items()}


def tokenize_prompts(
    ds: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int, cache_dir: str | None = None
) -> Dataset:
    """Chat rows -> `prompt_messages` (turns before the last assistant turn), `reference` (the
    dataset's last response) and `input_ids` (prompt rendered with the generation prompt)."""
    out = _cached_map(ds, _prompt_batch, cache_dir, "tokenize prompts", tokenizer=tokenizer, max_length=max_length)
    _warn_skipped(len(ds), len(out), "tokenize_prompts", max_length)
    return out


def _pack_batch(batch: dict, tokenizer: PreTrainedTokenizerBase, seq_len: int, text_column: str) -> dict:
    eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    documents = tokenizer(batch[text_column])["input_ids"]  # with the tokenizer's BOS, if it adds one
    stream = list(chain.from_iterable(doc + eos for doc in documents))
    blocks = [stream[i : i + seq_len] for i in range(0, len(stream) - seq_len + 1, seq_len)]
    return {"input_ids": blocks, "labels": blocks}


def pack_text(
    ds: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    seq_len: int,
    cache_dir: str | None = None,
    text_column: str = "text",
) -> Dataset:
    """Documents -> fixed-length blocks of `seq_len` tokens (BOS doc EOS, concatenated; the tail
    of each 1000-document batch that does not fill a block is dropped); labels = input_ids."""
    return _cached_map(
        ds, _pack_batch, cache_dir, "pack text", tokenizer=tokenizer, seq_len=seq_len, text_column=text_column
    )
