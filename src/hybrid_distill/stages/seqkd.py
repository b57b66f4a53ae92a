"""Stage `seqkd` (sequence-level KD): the teacher answers the prompts of the dataset's train and validation splits;
its answers are saved as a HF DatasetDict on disk (UltraChat schema, splits `train` and `validation`) that the next
stage trains and validates on (`data.source=<run dir>/seqkd_dataset`). Validation prompts stay held out."""

from __future__ import annotations

import torch
from datasets import Dataset, DatasetDict, load_from_disk
from omegaconf import DictConfig
from rich.progress import track
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..console import console
from ..atomic import publish_dir
from ..data.loaders import load_chat_dataset
from ..data.schemas import prompt_turns, with_responses
from ..errors import UserError, reported_as_user_error
from ..runtime import RunContext
from .teacher import obtain_teacher

DATASET_DIRNAME = "seqkd_dataset"

@torch.no_grad()
def generate_responses(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[list[dict]],
                       max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy answers of `model` to chat prompts, batched with left padding."""
    model.eval()
    tokenizer.padding_side = "left"
    responses: list[str] = []
    for start in track(range(0, len(prompts), batch_size), description="teacher generating"):
        enc = tokenizer.apply_chat_template(prompts[start:start + batch_size], add_generation_prompt=True,
                                            padding=True, return_tensors="pt", return_dict=True)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        new_tokens = out[:, enc["input_ids"].shape[1]:]  # (B, <= max_new_tokens)
        responses += [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return responses


def answer_split(teacher, tokenizer, cfg: DictConfig, split: str, max_prompts: int | None) -> tuple[Dataset, int]:
    """The teacher's answers to the prompts of one split, as chat rows; rows with an empty answer are dropped."""
    with reported_as_user_error("data.source"):
        rows = load_chat_dataset(cfg.data.source, split=split, num_rows=max_prompts)
    prompts = [prompt_turns(messages) for messages in rows["messages"]]
    responses = generate_responses(teacher, tokenizer, prompts, int(cfg.stage.max_new_tokens), int(cfg.stage.batch_size))
    labelled = [row for row, r in zip(with_responses(prompts, responses), responses) if r]
    if not labelled:
        raise UserError(f"seqkd: the teacher gave an empty answer to all {len(prompts)} {split} prompts "
                        "(undertrained teacher?); nothing to train on")
    empty = len(prompts) - len(labelled)
    if empty:
        console.print(f"[yellow]seqkd: skipped {empty} of {len(prompts)} {split} prompts with an empty teacher answer[/]")
    return Dataset.from_list(labelled), empty


def _summary(dataset: DatasetDict, empty: int | None, target) -> dict:
    return {"seqkd_rows": dataset.num_rows["train"], "seqkd_val_rows": dataset.num_rows["validation"],
            "seqkd_empty_skipped": empty, "seqkd_dataset_dir": str(target)}


def run_seqkd(cfg: DictConfig, run: RunContext) -> dict:
    target = run.output_dir / DATASET_DIRNAME
    if target.is_dir():  # a resumed run that saved its answers before it stopped (the save is atomic: they are whole)
        console.print(f"seqkd: reusing the teacher answers already saved in {target}")
        return _summary(load_from_disk(str(target)), None, target)
    teacher, tokenizer = obtain_teacher(cfg, run)
    train, empty_train = answer_split(teacher, tokenizer, cfg, cfg.stage.split, cfg.stage.max_prompts)
    val, empty_val = answer_split(teacher, tokenizer, cfg, cfg.stage.val_split, cfg.stage.max_val_prompts)
    dataset = DatasetDict(train=train, validation=val)
    if not publish_dir(target, lambda staging: dataset.save_to_disk(str(staging))):
        raise FileExistsError(f"{target} already exists; not overwriting it")
    return _summary(dataset, empty_train + empty_val, target)
