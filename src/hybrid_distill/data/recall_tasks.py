"""Synthetic recall tasks as token batches, for any tokenizer: MQAR at token level, Phonebook, copying and
needle-in-a-haystack as text.

Every task yields a `TaskBatch`: right-padded `input_ids` (N, T) and `labels` (N, T) that hold the answer tokens
(IGNORE_INDEX elsewhere), aligned with the inputs as everywhere in this project (the logits at t - 1 predict
labels[t]). Scoring is teacher-forced (recall.py): an answer counts as right when the argmax at every one of its
positions is the answer token, which is exactly when greedy decoding from the prompt would produce it.

MQAR follows Zoology (Arora et al. 2023): keys from the lower half of the vocabulary, values from the upper half,
the key-value pairs first, then every key queried once at a random place later on; one answer token per query.
The text tasks are built from separately tokenized segments (prompt head, items, question, answer), so the answer's
tokens and the total length are known exactly without re-tokenizing; each example holds as many items (phone book
entries, haystack lines, words) as fit in the token budget.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import torch
from transformers import PreTrainedTokenizerBase

from .chat_tasks import WORDS
from .collate import RightPadCollator, pad_token_id
from .corpus import shakespeare_documents
from .tokenize import IGNORE_INDEX

TEXT_FORMATS = ("auto", "chat", "plain", "chat_cue")


class TaskDoesNotFit(ValueError):
    """A task cannot be built at the requested length (too short for its smallest example)."""


@dataclass(frozen=True)
class TaskBatch:
    task: str
    length: int  # token budget: every row has at most this many tokens
    input_ids: torch.Tensor  # (N, T) long, right-padded
    labels: torch.Tensor  # (N, T) long: answer tokens, IGNORE_INDEX elsewhere (not shifted)
    per_token_queries: bool  # True: each answer token is its own query (MQAR); False: one query per row


# ---------------------------------------------------------------- MQAR (token level)


def mqar_pools(vocab_size: int, reserved: Sequence[int] = ()) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(filler token, key pool, value pool): keys from [1, V/2), values from [V/2, V), minus `reserved` ids
    (a real tokenizer's special tokens). The lowest free id in the key range becomes the filler (Zoology uses 0)."""
    taken = set(int(i) for i in reserved)
    keys = [i for i in range(1, vocab_size // 2) if i not in taken]
    values = torch.tensor([i for i in range(vocab_size // 2, vocab_size) if i not in taken])
    if len(keys) < 2 or len(values) < 1:
        raise ValueError(f"vocabulary of {vocab_size} tokens leaves too few ids for MQAR keys and values")
    return keys[0], torch.tensor(keys[1:]), values


def mqar(
    vocab_size: int,
    seq_len: int,
    num_pairs: int,
    num_examples: int,
    generator: torch.Generator,
    reserved: Sequence[int] = (),
    prefix: Sequence[int] = (),
) -> TaskBatch:
    """Rows of exactly `seq_len` tokens: `prefix` (e.g. BOS), k1 v1 ... kn vn, then a query region of filler tokens
    in which every key appears once at a random even offset, followed by its value (the answer)."""
    filler, key_pool, value_pool = mqar_pools(vocab_size, reserved)
    context = len(prefix) + 2 * num_pairs
    slots = (seq_len - context) // 2  # query slots of two tokens (key, value)
    if slots < num_pairs:
        raise TaskDoesNotFit(
            f"MQAR: seq_len {seq_len} cannot hold {num_pairs} pairs and their queries "
            f"(needs at least {context + 2 * num_pairs} tokens)"
        )
    if num_pairs > min(len(key_pool), len(value_pool)):
        raise ValueError(
            f"MQAR: {num_pairs} pairs need that many distinct keys and values; the vocabulary of "
            f"{vocab_size} has {len(key_pool)} keys and {len(value_pool)} values"
        )
    input_ids = torch.full((num_examples, seq_len), filler, dtype=torch.long)
    labels = torch.full((num_examples, seq_len), IGNORE_INDEX, dtype=torch.long)
    input_ids[:, : len(prefix)] = torch.tensor(list(prefix), dtype=torch.long)
    for row in range(num_examples):
        keys = key_pool[torch.randperm(len(key_pool), generator=generator)[:num_pairs]]  # (n,)
        values = value_pool[torch.randperm(len(value_pool), generator=generator)[:num_pairs]]  # (n,)
        pairs = torch.stack([keys, values], dim=1).flatten()  # (2n,) k1 v1 k2 v2 ...
        input_ids[row, len(prefix) : context] = pairs
        order = torch.randperm(num_pairs, generator=generator)  # which key each query asks for
        where = context + 2 * torch.randperm(slots, generator=generator)[:num_pairs]  # (n,) query key positions
        input_ids[row, where] = keys[order]
        input_ids[row, where + 1] = values[order]
        labels[row, where + 1] = values[order]
    return TaskBatch("mqar", seq_len, input_ids, labels, per_token_queries=True)


# ---------------------------------------------------------------- text tasks


@dataclass(frozen=True)
class TextPrompt:
    context: list[str]  # segments tokenized one by one (items, or fixed text)
    question: str  # asked in a chat turn ("" = the context already asks)
    cue: str  # plain text: what precedes the answer ("... Bob Jones:")
    answer: str


class TextTask(Protocol):
    name: str
    min_items: int

    def prompt(self, n: int) -> TextPrompt:
        """The example with its first n items; more items make a longer prompt."""


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


FIRST_NAMES = (
    "Alice", "Bruno", "Clara", "David", "Elena", "Felix", "Grace", "Hugo", "Irene", "James", "Karin", "Louis",
    "Maria", "Nadia", "Oscar", "Paula", "Quinn", "Rosa", "Simon", "Tessa", "Uma", "Victor", "Wendy", "Xavier",
    "Yara", "Zoe", "Anton", "Bella", "Carl", "Diana", "Emil", "Flora", "Georg", "Hanna", "Ivan", "Julia",
)  # fmt: skip
LAST_NAMES = (
    "Adams", "Baker", "Clark", "Dunn", "Evans", "Fisher", "Green", "Hall", "Irwin", "Jones", "King", "Lewis",
    "Moore", "Nolan", "Owens", "Price", "Reed", "Scott", "Turner", "Vance", "Walsh", "Young", "Brooks", "Carter",
    "Dixon", "Ellis", "Foster", "Grant", "Hayes", "Jensen", "Keller", "Lambert", "Meyer", "Novak", "Parker", "Ross",
)  # fmt: skip


class Phonebook:
    """Name/number pairs ("Alice Adams: 555-0142"), then one name is asked; answer: its number (Waleffe et al.)."""

    name, min_items = "phonebook", 2

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.names = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]
        rng.shuffle(self.names)
        self.numbers = [f"{_digits(rng, 3)}-{_digits(rng, 4)}" for _ in self.names]
        self.depth = rng.random()  # where in the book the asked entry sits

    def prompt(self, n: int) -> TextPrompt:
        if n > len(self.names):
            raise ValueError(f"phonebook: at most {len(self.names)} distinct names")
        asked = min(int(self.depth * n), n - 1)
        lines = [f"{self.names[i]}: {self.numbers[i]}\n" for i in range(n)]
        return TextPrompt(lines, f"Number of {self.names[asked]}?", f"{self.names[asked]}:", self.numbers[asked])


@functools.cache
def haystack_lines() -> tuple[str, ...]:
    """Non-empty lines of the held-out Shakespeare plays (not in any training split)."""
    text = "\n".join(shakespeare_documents()["validation"]["text"])
    return tuple(line + "\n" for line in text.splitlines() if line.strip())


class Needle:
    """Needle in a haystack: a secret number hidden at a random depth of held-out Shakespeare lines."""

    name, min_items = "needle", 1

    def __init__(self, rng: random.Random):
        self.lines = haystack_lines()
        self.start = rng.randrange(len(self.lines))
        self.secret = str(rng.randint(1000, 9999))
        self.depth = rng.random()

    def prompt(self, n: int) -> TextPrompt:
        hay = [self.lines[(self.start + i) % len(self.lines)] for i in range(n)]
        k = round(self.depth * n)
        needle = f"The secret number is {self.secret}.\n"
        return TextPrompt(
            hay[:k] + [needle] + hay[k:], "What is the secret number?", "The secret number is", self.secret
        )


class Copying:
    """Copy a list of random words (the chat tasks' `copy` format: "Copy exactly: ...")."""

    name, min_items = "copy", 1

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.words: list[str] = []

    def prompt(self, n: int) -> TextPrompt:
        while len(self.words) < n:
            self.words.append(self.rng.choice(WORDS))
        words = self.words[:n]
        return TextPrompt(["Copy exactly:", *(f" {w}" for w in words)], "", "\nAgain:", " ".join(words))


TEXT_TASKS: dict[str, Callable[[random.Random], TextTask]] = {
    "phonebook": Phonebook,
    "needle": Needle,
    "copy": Copying,
}


class PromptFormat:
    """Turns a TextPrompt into token ids for one tokenizer: as one chat user turn answered by the assistant (`chat`),
    as plain text where the answer continues a cue ("Bob Jones: 555-0142", `plain`), or as the chat turn whose
    answer starts with that cue (`chat_cue`: "<assistant> Bob Jones: 555-0142"; an instruction-tuned model words its
    answer its own way, "The number of Bob Jones is ...", which a teacher-forced score of the bare answer counts as
    wrong). `auto`: chat when the tokenizer has a chat template, else plain."""

    SENTINEL = "\x00USER\x00"

    def __init__(self, tokenizer: PreTrainedTokenizerBase, style: str = "auto"):
        if style not in TEXT_FORMATS:
            raise ValueError(f"unknown text format '{style}'; choose one of {', '.join(TEXT_FORMATS)}")
        self.chat = style in ("chat", "chat_cue") or (style == "auto" and bool(tokenizer.chat_template))
        self.cue_in_reply = style == "chat_cue"
        if self.cue_in_reply and not tokenizer.chat_template:
            raise ValueError("text format 'chat_cue' needs a tokenizer with a chat template")
        self.style = style if style != "auto" else ("chat" if self.chat else "plain")
        self._encode = functools.lru_cache(maxsize=1 << 16)(
            lambda s: tuple(tokenizer(s, add_special_tokens=False)["input_ids"])
        )
        if self.chat:
            # the template around one user message, up to the assistant's first token
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": self.SENTINEL}], add_generation_prompt=True, tokenize=False
            )
            head, tail = rendered.split(self.SENTINEL)
            self.head, self.tail = self._encode(head), self._encode(tail)
        else:
            self.head = () if tokenizer.bos_token_id is None else (tokenizer.bos_token_id,)
            self.tail = ()

    def tokens(self, p: TextPrompt) -> tuple[list[int], list[int]]:
        """(prompt ids, answer ids)."""
        ids = list(self.head)
        for segment in p.context:
            ids += self._encode(segment)
        if self.chat:
            if p.question:
                ids += self._encode("\n" + p.question)
            if self.cue_in_reply:  # the reply opens with the cue (copying's "\nAgain:" without its line break)
                cue = self._encode(p.cue.lstrip("\n"))
                return ids + list(self.tail) + list(cue), list(self._encode(" " + p.answer))
            return ids + list(self.tail), list(self._encode(p.answer))
        return ids + list(self._encode(p.cue)), list(self._encode(" " + p.answer))


def fit_items(task: TextTask, fmt: PromptFormat, budget: int) -> tuple[list[int], list[int]]:
    """The example with the most items whose prompt + answer fit in `budget` tokens (doubling, then bisection)."""

    def size(n: int) -> int:
        prompt, answer = fmt.tokens(task.prompt(n))
        return len(prompt) + len(answer)

    lo = task.min_items
    if size(lo) > budget:
        raise TaskDoesNotFit(f"{task.name}: {budget} tokens cannot hold even {lo} item(s) ({size(lo)} tokens needed)")
    hi = lo + 1
    while size(hi) <= budget:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # size(lo) fits, size(hi) does not
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if size(mid) <= budget else (lo, mid)
    return fmt.tokens(task.prompt(lo))


def _check_text_task(name: str) -> None:
    if name not in TEXT_TASKS:
        raise ValueError(f"unknown text task '{name}'; choose one of {', '.join(TEXT_TASKS)}")


def _text_rows(examples: list[tuple[list[int], list[int]]], task: str, length: int, pad_id: int) -> TaskBatch:
    rows = [
        {"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer} for prompt, answer in examples
    ]
    batch = RightPadCollator(pad_id)(rows)
    return TaskBatch(task, length, batch["input_ids"], batch["labels"], per_token_queries=False)


def text_task(name: str, fmt: PromptFormat, pad_id: int, length: int, num_examples: int, seed: int) -> TaskBatch:
    """Rows holding as many items as fit in `length` tokens."""
    _check_text_task(name)
    rng = random.Random(f"{name}-{length}-{seed}")
    return _text_rows(
        [fit_items(TEXT_TASKS[name](rng), fmt, length) for _ in range(num_examples)], name, length, pad_id
    )


def text_task_items(name: str, fmt: PromptFormat, pad_id: int, items: int, num_examples: int, seed: int) -> TaskBatch:
    """Rows of exactly `items` items (phone book entries, words to copy, haystack lines), however long they get;
    the batch's `length` is its longest row."""
    _check_text_task(name)
    rng = random.Random(f"{name}-items{items}-{seed}")
    examples = []
    for _ in range(num_examples):
        task = TEXT_TASKS[name](rng)
        if items < task.min_items:
            raise TaskDoesNotFit(f"{name}: needs at least {task.min_items} item(s), got {items}")
        examples.append(fmt.tokens(task.prompt(items)))
    return _text_rows(examples, name, max(len(p) + len(a) for p, a in examples), pad_id)


# ---------------------------------------------------------------- one entry point for the suite

TASK_NAMES = ("mqar", *TEXT_TASKS)


def mqar_for(
    tokenizer: PreTrainedTokenizerBase, vocab_size: int, length: int, pairs: int, num_examples: int, seed: int
) -> TaskBatch:
    """MQAR for a model with `vocab_size` logits and this tokenizer: its special ids are never keys or values, its
    BOS (if any) starts every row."""
    prefix = () if tokenizer.bos_token_id is None else (tokenizer.bos_token_id,)
    return mqar(
        vocab_size,
        length,
        pairs,
        num_examples,
        torch.Generator().manual_seed(seed),
        reserved=tokenizer.all_special_ids,
        prefix=prefix,
    )


def build_task(
    name: str,
    tokenizer: PreTrainedTokenizerBase,
    vocab_size: int,
    length: int,
    num_examples: int,
    seed: int,
    text_format: str = "auto",
    mqar_pairs_per_token: float = 1 / 16,
) -> TaskBatch:
    """One task at one length for a model with `vocab_size` logits (which may exceed the tokenizer's size).

    MQAR uses length * mqar_pairs_per_token pairs: Zoology's (64, 4), (128, 8), (256, 16) at the default 1/16."""
    if name == "mqar":
        return mqar_for(tokenizer, vocab_size, length, max(1, int(length * mqar_pairs_per_token)), num_examples, seed)
    return text_task(name, PromptFormat(tokenizer, text_format), pad_token_id(tokenizer), length, num_examples, seed)


def build_task_items(
    name: str,
    tokenizer: PreTrainedTokenizerBase,
    vocab_size: int,
    items: int,
    mqar_length: int,
    num_examples: int,
    seed: int,
    text_format: str = "auto",
) -> TaskBatch:
    """One task with exactly `items` key-value pairs (MQAR, in rows of `mqar_length` tokens), phone book entries,
    words to copy or haystack lines (text tasks: as long as they need)."""
    if name == "mqar":
        return mqar_for(tokenizer, vocab_size, mqar_length, items, num_examples, seed)
    return text_task_items(
        name, PromptFormat(tokenizer, text_format), pad_token_id(tokenizer), items, num_examples, seed
    )
