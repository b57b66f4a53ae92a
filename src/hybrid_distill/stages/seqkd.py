"""Stage `seqkd` (sequence-level KD): the teacher answers the prompts of the dataset's train and validation splits;
its answers are saved as a HF DatasetDict on disk (UltraChat schema, splits `train` and `validation`) that the next
stage trains and validates on (`data.source=<run dir>/seqkd_dataset`). Validation prompts stay held out.

Answers are appended to `<run dir>/seqkd_partial/<split>.jsonl` after every batch, so a run stopped by a signal
(SIGTERM, SIGUSR1/2, SIGINT: after the current batch, exit 75) or killed continues with `resume=<run dir>` from the
first prompt without an answer; the partial files go once the dataset is saved."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import torch
from datasets import Dataset, DatasetDict, load_from_disk
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..console import console, progress
from ..atomic import publish_dir
from ..data.loaders import load_chat_dataset
from ..data.schemas import prompt_turns, with_responses
from ..errors import Preempted, UserError, reported_as_user_error
from ..reliability.signals import noted_signals
from ..runtime import RunContext, build_logger, finish_logger
from .common import accelerator_device
from .teacher import obtain_teacher

DATASET_DIRNAME = "seqkd_dataset"
PARTIAL_DIRNAME = "seqkd_partial"


@torch.no_grad()
def generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[dict]],
    max_new_tokens: int,
    **sampling,
) -> list[str]:
    """Answers of `model` to one batch of chat prompts, left-padded: greedy, or sampled with `sampling`
    (`generate`'s do_sample, temperature, top_p, ...)."""
    enc = tokenizer.apply_chat_template(
        prompts, add_generation_prompt=True, padding=True, return_tensors="pt", return_dict=True
    ).to(next(model.parameters()).device)
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        **{"do_sample": False, **sampling},
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    new_tokens = out[:, enc["input_ids"].shape[1] :]  # (B, <= max_new_tokens)
    return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def generate_responses(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[dict]],
    max_new_tokens: int,
    batch_size: int,
    on_batch: Callable[[list[str]], None] = lambda answers: None,
    stopped: Callable[[], object] = lambda: None,
    what: str = "seqkd generation",
    **sampling,
) -> list[str]:
    """Answers of `model` to chat prompts (greedy unless `sampling` says otherwise, see generate_batch), batched;
    `on_batch` gets each batch's answers as they come. Before each batch, a signal `stopped()` reports ends the
    generation as Preempted."""
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:  # Llama-3 and SmolLM2's GGUF tokenizer have none; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    responses: list[str] = []
    for start in progress(range(0, len(prompts), batch_size), description="teacher generating"):
        if stopped():
            raise Preempted(f"{stopped().name} during {what}, after {len(responses)} of {len(prompts)} prompts")
        answers = generate_batch(model, tokenizer, prompts[start : start + batch_size], max_new_tokens, **sampling)
        on_batch(answers)
        responses += answers
    return responses


def saved_answers(path: Path) -> list[str]:
    """The answers an interrupted run appended to `path`; a last line cut short by a kill is dropped from the file."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        os.truncate(path, len(complete))
    return [json.loads(line) for line in complete.decode("utf-8").splitlines()]


def append_answers(path: Path, answers: list[str]) -> None:
    with open(path, "a") as f:
        f.write("".join(json.dumps(answer) + "\n" for answer in answers))
        f.flush()
        os.fsync(f.fileno())


def answer_split(
    teacher,
    tokenizer,
    cfg: DictConfig,
    split: str,
    max_prompts: int | None,
    partial_dir: Path,
    stopped: Callable[[], object] = lambda: None,
) -> tuple[Dataset, int]:
    """The teacher's answers to the prompts of one split, as chat rows; rows with an empty answer are dropped.
    Answers already in `partial_dir/<split>.jsonl` (an interrupted run's) are reused, new ones appended there."""
    with reported_as_user_error("data.source"):
        rows = load_chat_dataset(cfg.data.source, split=split, num_rows=max_prompts)
    prompts = [prompt_turns(messages) for messages in rows["messages"]]
    partial = partial_dir / f"{split}.jsonl"
    responses = saved_answers(partial)[: len(prompts)]
    if responses:
        console.print(f"seqkd: reusing {len(responses)} {split} answers saved in {partial}")
    try:
        responses += generate_responses(
            teacher,
            tokenizer,
            prompts[len(responses) :],
            int(cfg.stage.max_new_tokens),
            int(cfg.stage.batch_size),
            lambda answers: append_answers(partial, answers),
            stopped,
        )
    except Preempted as err:
        raise Preempted(f"{err} of {split}; {len(saved_answers(partial))} answers are saved in {partial}") from None
    labelled = [row for row, r in zip(with_responses(prompts, responses), responses) if r]
    if not labelled:
        raise UserError(
            f"seqkd: the teacher gave an empty answer to all {len(prompts)} {split} prompts "
            "(undertrained teacher?); nothing to train on"
        )
    empty = len(prompts) - len(labelled)
    if empty:
        console.print(
            f"[yellow]seqkd: skipped {empty} of {len(prompts)} {split} prompts with an empty teacher answer[/]"
        )
    return Dataset.from_list(labelled), empty


def _summary(dataset: DatasetDict, empty: int | None, target) -> dict:
    return {
        "seqkd_rows": dataset.num_rows["train"],
        "seqkd_val_rows": dataset.num_rows["validation"],
        "seqkd_empty_skipped": empty,
        "seqkd_dataset_dir": str(target),
    }


def run_seqkd(cfg: DictConfig, run: RunContext) -> dict:
    target = run.output_dir / DATASET_DIRNAME
    if target.is_dir():  # a resumed run that saved its answers before it stopped (the save is atomic: they are whole)
        console.print(f"seqkd: reusing the teacher answers already saved in {target}")
        return _summary(load_from_disk(str(target)), None, target)
    partial = run.output_dir / PARTIAL_DIRNAME
    partial.mkdir(parents=True, exist_ok=True)
    with noted_signals() as stopped:
        teacher, tokenizer = obtain_teacher(cfg, run)
        loggers = build_logger(cfg, run, "seqkd")  # after the teacher: a teacher pretrained on the way has its own run
        if accelerator_device(cfg) is not None:  # generation is the whole cost of this stage
            teacher = teacher.to(accelerator_device(cfg))
        train, empty_train = answer_split(
            teacher, tokenizer, cfg, cfg.stage.split, cfg.stage.max_prompts, partial, stopped
        )
        val, empty_val = answer_split(
            teacher, tokenizer, cfg, cfg.stage.val_split, cfg.stage.max_val_prompts, partial, stopped
        )
    dataset = DatasetDict(train=train, validation=val)
    if not publish_dir(target, lambda staging: dataset.save_to_disk(str(staging))):
        raise FileExistsError(f"{target} already exists; not overwriting it")
    shutil.rmtree(partial, ignore_errors=True)  # the dataset holds every answer now
    summary = _summary(dataset, empty_train + empty_val, target)
    log_answers(loggers, summary, train)
    return {**summary, "wandb_dir": finish_logger(loggers)}


def log_answers(loggers, summary: dict, train: Dataset, rows: int = 16) -> None:
    """The stage's counts as metrics, and the first `rows` prompt/answer pairs as a W&B table to read."""
    for logger in loggers or []:
        logger.log_metrics(
            {f"seqkd/{k.removeprefix('seqkd_')}": v for k, v in summary.items() if isinstance(v, int)}, step=0
        )
        if isinstance(logger, WandbLogger):
            pairs = [
                [m[-2]["content"], m[-1]["content"]] for m in train.select(range(min(rows, len(train))))["messages"]
            ]
            logger.log_table("seqkd/answers", columns=["prompt", "answer"], data=pairs)
        logger.save()
