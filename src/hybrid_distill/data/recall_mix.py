"""Language-model text mixed with synthetic recall tasks, for training architectures from scratch (stage `scratch`).

Training rows: packed text blocks of `seq_len` tokens (the Shakespeare training plays, plus an optional corpus of
documents, e.g. the one the SmolLM2 teacher writes with stage `corpus`), and `recall_fraction` of all rows
generated recall examples (recall_tasks.py: MQAR, Phonebook, copying; loss on the answers only, as in Zoology). Recall
example i is made from `seed`-independent seed i, cycling through `tasks`: the same rows in every run, so that
architectures and seeds see the same data (the run's seed changes only the order). MQAR rows hold `mqar_pairs`
[min, max] key-value pairs (drawn per row), text tasks as many items as fit in a token budget drawn from
[seq_len / 4, seq_len]. Validation: held-out text only (the held-out plays and the corpus's held-out documents), so
that `val/ppl` is the held-out LM loss; recall is measured by the evaluation suite.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Sequence

import torch
from datasets import Dataset, concatenate_datasets
from torch.utils.data import ConcatDataset
from transformers import PreTrainedTokenizerBase

from .recall_tasks import TEXT_TASKS, TASK_NAMES, PromptFormat, fit_items, mqar_for
from .collate import pad_token_id
from .corpus import shakespeare_documents
from .datamodules import _TokenizedDataModule
from .tokenize import IGNORE_INDEX, pack_text


class RecallExamples(torch.utils.data.Dataset):
    """`size` generated recall rows (`input_ids`, `labels`: answers only), row i always the same."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        size: int,
        seq_len: int,
        tasks: Sequence[str],
        mqar_pairs: Sequence[int],
        text_format: str,
        offset: int = 0,
    ):
        unknown = [t for t in tasks if t not in TASK_NAMES]
        if unknown or not tasks:
            raise ValueError(f"data.tasks: unknown task(s) {unknown or tasks}; choose from {', '.join(TASK_NAMES)}")
        low, high = (int(n) for n in mqar_pairs)
        if not 1 <= low <= high or 1 + 4 * high > seq_len:
            raise ValueError(
                f"data.mqar_pairs={list(mqar_pairs)}: need 1 <= min <= max and 1 + 4 * max <= seq_len ({seq_len})"
            )
        self.tokenizer, self.size, self.seq_len, self.tasks = tokenizer, size, seq_len, list(tasks)
        self.pairs, self.offset = (low, high), offset
        self.format = PromptFormat(tokenizer, text_format)
        self.vocab = len(tokenizer)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        seed = self.offset + i
        rng = random.Random(seed)
        task = self.tasks[i % len(self.tasks)]
        if task == "mqar":
            batch = mqar_for(self.tokenizer, self.vocab, self.seq_len, rng.randint(*self.pairs), 1, seed)
            return {"input_ids": batch.input_ids[0], "labels": batch.labels[0]}  # (T,), (T,)
        prompt, answer = fit_items(TEXT_TASKS[task](rng), self.format, rng.randint(self.seq_len // 4, self.seq_len))
        return {
            "input_ids": torch.tensor(prompt + answer),  # (T,)
            "labels": torch.tensor([IGNORE_INDEX] * len(prompt) + answer),  # (T,)
        }


def corpus_documents(path: str | os.PathLike, val_fraction: float) -> tuple[Dataset, Dataset]:
    """(train, validation) documents of a JSON-lines corpus with a `text` field (stage `corpus` writes one); the last
    `val_fraction` of the lines are held out."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"corpus '{path}' does not exist (stage=corpus writes <run dir>/corpus.jsonl)")
    texts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f"corpus '{path}': line {number} is not a JSON object with a string 'text'")
            if row["text"].strip():  # an empty answer of the teacher
                texts.append(row["text"])
    if len(texts) < 2:
        raise ValueError(f"corpus '{path}' holds {len(texts)} document(s); at least 2 are needed (train, validation)")
    cut = len(texts) - max(1, round(val_fraction * len(texts)))
    return Dataset.from_dict({"text": texts[:cut]}), Dataset.from_dict({"text": texts[cut:]})


class RecallMixDataModule(_TokenizedDataModule):
    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        seq_len: int = 512,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | os.PathLike | None = None,
        recall_fraction: float = 0.25,
        tasks: Sequence[str] = ("mqar", "phonebook", "copy"),
        mqar_pairs: Sequence[int] = (4, 32),
        text_format: str = "plain",
        corpus: str | None = None,
        corpus_val_fraction: float = 0.02,
        num_validation_plays: int = 3,
    ):
        super().__init__(tokenizer, batch_size, num_workers, seed, cache_dir)
        if not 0 <= recall_fraction < 1:
            raise ValueError(f"data.recall_fraction must be in [0, 1), got {recall_fraction}")
        self.seq_len, self.recall_fraction = seq_len, recall_fraction
        self.recall_args = dict(tasks=list(tasks), mqar_pairs=list(mqar_pairs), text_format=text_format)
        self.corpus, self.corpus_val_fraction = corpus, corpus_val_fraction
        self.num_validation_plays = num_validation_plays
        self.collate.pad_id = pad_token_id(tokenizer)

    def _text(self) -> tuple[Dataset, Dataset]:
        """Packed text blocks (train, validation)."""
        plays = shakespeare_documents(self.num_validation_plays)
        splits = [[plays["train"]], [plays["validation"]]]
        if self.corpus:
            for split, documents in zip(splits, corpus_documents(self.corpus, self.corpus_val_fraction)):
                split.append(documents.select_columns(["text"]))
        return tuple(
            concatenate_datasets(
                [pack_text(d.select_columns(["text"]), self.tokenizer, self.seq_len, self.cache_dir) for d in split]
            )
            for split in splits
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        text_train, text_val = (d.with_format("torch") for d in self._text())
        recall_rows = round(len(text_train) * self.recall_fraction / (1 - self.recall_fraction))
        parts = [text_train]
        if recall_rows:
            parts.append(RecallExamples(self.tokenizer, recall_rows, self.seq_len, **self.recall_args))
        self.train_dataset, self.val_dataset = ConcatDataset(parts), text_val
        self.text_rows, self.recall_rows = len(text_train), recall_rows
