"""Collation (right padding, -100 labels, masks) and the LightningDataModules' batches."""

from pathlib import Path

import pytest
import torch
from datasets import DatasetDict

from hybrid_distill.data import datamodules
from hybrid_distill.data.chat_tasks import chat_rows
from hybrid_distill.data.collate import RightPadCollator, pad_token_id
from hybrid_distill.data.corpus import shakespeare_documents
from hybrid_distill.data.datamodules import ChatDataModule, PreferenceDataModule, TextDataModule
from hybrid_distill.data.tokenize import IGNORE_INDEX
from hybrid_distill.data.tokenizer import train_tokenizer

ULTRACHAT = Path(__file__).parent / "fixtures" / "ultrachat_sample.jsonl"


@pytest.fixture(scope="module")
def tokenizer():
    plays = shakespeare_documents()["train"]["text"][:2]
    return train_tokenizer([*plays, *(m["content"] for r in chat_rows(300, 0) for m in r["messages"])], vocab_size=512)


def test_collator_right_pads_every_sequence_column_to_one_length():
    rows = [
        {"chosen_input_ids": [5, 6, 7], "chosen_labels": [-100, 6, 7],
         "rejected_input_ids": [5, 8], "rejected_labels": [-100, 8]},
        {"chosen_input_ids": [5], "chosen_labels": [5],
         "rejected_input_ids": [5, 9, 9, 9], "rejected_labels": [-100, 9, 9, 9]},
    ]  # fmt: skip
    batch = RightPadCollator(pad_id=2)(rows)
    keys = ("input_ids", "labels", "attention_mask")
    assert set(batch) == {f"{side}_{key}" for side in ("chosen", "rejected") for key in keys}
    assert all(t.shape == (2, 4) and t.dtype == torch.long for t in batch.values())
    assert batch["chosen_input_ids"].tolist() == [[5, 6, 7, 2], [5, 2, 2, 2]]
    assert batch["chosen_labels"].tolist() == [[-100, 6, 7, -100], [5, -100, -100, -100]]
    assert batch["chosen_attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert batch["rejected_attention_mask"].sum(1).tolist() == [2, 4]
    with pytest.raises(ValueError, match="cannot collate column 'task'"):
        RightPadCollator(0)([{"input_ids": [1], "task": [0]}])


def test_pad_id_falls_back_to_eos(tokenizer):
    assert pad_token_id(tokenizer) == tokenizer.pad_token_id
    no_pad = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, eos_token="<|eos|>")
    assert no_pad.pad_token_id is None and pad_token_id(no_pad) == tokenizer.eos_token_id


def check_batch(batch: dict, prefix: str = "") -> None:
    ids, labels, mask = (batch[f"{prefix}{k}"] for k in ("input_ids", "labels", "attention_mask"))
    assert ids.dtype == labels.dtype == torch.long and ids.shape == labels.shape == mask.shape and ids.dim() == 2
    assert (labels[mask == 0] == IGNORE_INDEX).all()
    trained = labels != IGNORE_INDEX
    assert trained.any() and (labels[trained] == ids[trained]).all()


def test_chat_datamodule_batches_and_seeded_shuffle(tokenizer, tmp_path):
    def first_batch(seed: int) -> dict:
        dm = ChatDataModule(tokenizer, batch_size=8, seed=seed, cache_dir=tmp_path, num_train_rows=64, num_val_rows=16)
        dm.setup("fit")
        assert (len(dm.train_dataset), len(dm.val_dataset)) == (64, 16)
        return next(iter(dm.train_dataloader()))

    batch = first_batch(seed=1)
    assert set(batch) == {"input_ids", "labels", "attention_mask"} and batch["input_ids"].shape[0] == 8
    check_batch(batch)
    assert torch.equal(first_batch(seed=1)["input_ids"], batch["input_ids"])
    assert not torch.equal(first_batch(seed=2)["input_ids"], batch["input_ids"])


def test_chat_datamodule_from_a_file_and_its_prompts(tokenizer, tmp_path):
    dm = ChatDataModule(tokenizer, source=ULTRACHAT, batch_size=2, cache_dir=tmp_path, val_fraction=0.25)
    dm.setup()
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (3, 1)
    check_batch(next(iter(dm.val_dataloader())))
    prompts = dm.prompts("train")
    assert len(prompts) == 3 and all(tokenizer.decode(p).endswith("<|assistant|>\n") for p in prompts["input_ids"])


def test_preference_datamodule_batches(tokenizer, tmp_path):
    dm = PreferenceDataModule(tokenizer, batch_size=4, cache_dir=tmp_path, num_train_rows=16, num_val_rows=8)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert len(batch) == 6
    for side in ("chosen_", "rejected_"):
        check_batch(batch, side)
    assert batch["chosen_input_ids"].shape == batch["rejected_input_ids"].shape
    assert not torch.equal(batch["chosen_labels"], batch["rejected_labels"])


def test_text_datamodule_packs_shakespeare_and_can_mix_in_chat(tokenizer, tmp_path, monkeypatch):
    def two_short_plays(num_validation_plays: int) -> DatasetDict:  # the full corpus takes seconds to tokenize
        plays = shakespeare_documents(num_validation_plays)
        return DatasetDict(
            {split: plays[split].select([0]).map(lambda r: {"text": r["text"][:20_000]}) for split in plays}
        )

    monkeypatch.setattr(datamodules, "shakespeare_documents", two_short_plays)
    text = TextDataModule(tokenizer, seq_len=128, batch_size=4, cache_dir=tmp_path)
    text.setup()
    batch = next(iter(text.train_dataloader()))
    check_batch(batch)
    assert batch["input_ids"].shape == (4, 128) and torch.equal(batch["labels"], batch["input_ids"])
    assert "Athens" in tokenizer.decode(text.train_dataset[0]["input_ids"])  # a-midsummer-night-s-dream
    mixed = TextDataModule(
        tokenizer,
        seq_len=128,
        batch_size=4,
        cache_dir=tmp_path,
        chat_source="builtin",
        num_chat_train_rows=40,
        num_chat_val_rows=10,
    )
    mixed.setup()
    assert len(mixed.train_dataset) == len(text.train_dataset) + 40
    assert len(mixed.val_dataset) == len(text.val_dataset) + 10
    chat_row = mixed.train_dataset[len(text.train_dataset)]
    assert (chat_row["labels"] == IGNORE_INDEX).any() and len(chat_row["input_ids"]) < 128
