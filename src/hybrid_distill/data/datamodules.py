"""LightningDataModules: packed Shakespeare text (optionally mixed with chat tasks, for
pretraining the tiny teacher), chat SFT / distillation, and preference pairs for DPO.

Batches (see collate.py): `input_ids` (B, T) long, `labels` (B, T) long with -100 = ignore (not
shifted), `attention_mask` (B, T); preference batches carry the same three per side with
`chosen_` / `rejected_` prefixes. `seed` fixes the shuffling order only (a seeded
`torch.Generator` in the train DataLoader); the data itself never depends on it.
"""

import os

import lightning as L
import torch
from datasets import Dataset, concatenate_datasets
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from hybrid_distill.data.collate import RightPadCollator, pad_token_id
from hybrid_distill.data.resumable_loader import ResumableDataLoader
from hybrid_distill.data.corpus import shakespeare_documents
from hybrid_distill.data.preferences import pairs_from_chat
from hybrid_distill.data.loaders import BUILTIN, Source, load_chat_dataset, load_preference_dataset, load_train_val
from hybrid_distill.data.tokenize import pack_text, tokenize_chat, tokenize_preference, tokenize_prompts


class _TokenizedDataModule(L.LightningDataModule):
    """Shared loaders; subclasses build (train, validation) tokenized datasets in `_build`."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int,
        num_workers: int,
        seed: int,
        cache_dir: str | os.PathLike | None,
    ):
        super().__init__()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.collate = RightPadCollator(pad_token_id(tokenizer))
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None

    def _build(self) -> tuple[Dataset, Dataset]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            train, val = self._build()
            self.train_dataset, self.val_dataset = train.with_format("torch"), val.with_format("torch")

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        # resumable: Lightning checkpoints its position, so an interrupted run continues mid-epoch exactly
        return ResumableDataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, shuffle=False)


class TextDataModule(_TokenizedDataModule):
    """Shakespeare packed into `seq_len` blocks (train: all but the last `num_validation_plays`
    plays). With `chat_source` (e.g. "builtin"), the chat rows of that source (loss on responses)
    are added to both splits, so a teacher pretrained here also learns the chat tasks."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        seq_len: int = 256,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | os.PathLike | None = None,
        num_validation_plays: int = 3,
        chat_source: Source | None = None,
        num_chat_train_rows: int | None = None,
        num_chat_val_rows: int | None = None,
    ):
        super().__init__(tokenizer, batch_size, num_workers, seed, cache_dir)
        self.seq_len = seq_len
        self.num_validation_plays = num_validation_plays
        self.chat_source = chat_source
        self.num_chat_train_rows = num_chat_train_rows
        self.num_chat_val_rows = num_chat_val_rows

    def _build(self) -> tuple[Dataset, Dataset]:
        documents = shakespeare_documents(self.num_validation_plays)
        splits = [
            pack_text(documents[split], self.tokenizer, self.seq_len, self.cache_dir)
            for split in ("train", "validation")
        ]
        if self.chat_source is None:
            return tuple(splits)
        chat = load_train_val(
            load_chat_dataset,
            self.chat_source,
            num_train_rows=self.num_chat_train_rows,
            num_val_rows=self.num_chat_val_rows,
            cache_dir=self.cache_dir,
        )
        return tuple(
            concatenate_datasets([text, tokenize_chat(rows, self.tokenizer, self.seq_len, self.cache_dir)])
            for text, rows in zip(splits, chat)
        )


class _ConversationDataModule(_TokenizedDataModule):
    """Common arguments of chat and preference data: where rows come from and how many."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        source: Source = BUILTIN,
        seq_len: int = 128,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | os.PathLike | None = None,
        train_split: str = "train",
        val_split: str = "validation",
        val_fraction: float = 0.05,
        num_train_rows: int | None = None,
        num_val_rows: int | None = None,
    ):
        super().__init__(tokenizer, batch_size, num_workers, seed, cache_dir)
        self.source = source
        self.seq_len = seq_len  # the longest row kept (longer rows are skipped, counted in a warning)
        self.split_args = dict(
            train_split=train_split,
            val_split=val_split,
            val_fraction=val_fraction,
            num_train_rows=num_train_rows,
            num_val_rows=num_val_rows,
            cache_dir=self.cache_dir,
        )


class ChatDataModule(_ConversationDataModule):
    """Chat SFT / distillation data (loss on assistant responses); `source` as in loaders.py."""

    def _rows(self) -> tuple[Dataset, Dataset]:
        return load_train_val(load_chat_dataset, self.source, **self.split_args)

    def _build(self) -> tuple[Dataset, Dataset]:
        return tuple(tokenize_chat(rows, self.tokenizer, self.seq_len, self.cache_dir) for rows in self._rows())

    def prompts(self, split: str = "train") -> Dataset:
        """Prompts for generation (sequence-level KD, task accuracy): `prompt_messages`,
        `reference` (the dataset's response) and `input_ids` (prompt + generation prompt, unpadded)."""
        train, val = self._rows()
        rows = {"train": train, "validation": val}[split]
        return tokenize_prompts(rows, self.tokenizer, self.seq_len, self.cache_dir)


class PreferenceDataModule(_ConversationDataModule):
    """Preference pairs for DPO: `chosen_*` and `rejected_*` input_ids / labels / attention_mask. With
    `pairs_from_chat`, `source` is chat data (e.g. the teacher's seqkd answers) and each pair is built from a row:
    chosen = its answer, rejected = the answer to another prompt (preferences.pairs_from_chat)."""

    def __init__(self, *args, pairs_from_chat: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.pairs_from_chat = pairs_from_chat

    def _build(self) -> tuple[Dataset, Dataset]:
        if self.pairs_from_chat:
            chat = load_train_val(load_chat_dataset, self.source, **self.split_args)
            rows = tuple(pairs_from_chat(split, seed=0) for split in chat)
        else:
            rows = load_train_val(load_preference_dataset, self.source, **self.split_args)
        return tuple(tokenize_preference(r, self.tokenizer, self.seq_len, self.cache_dir) for r in rows)
