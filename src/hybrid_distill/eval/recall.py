"""Teacher-forced scoring of recall tasks, and two sweeps over the same examples for every model (student, teacher):
every task at every multiple of the training length (`recall_suite`), and every task at a growing number of
key-value pairs / items (`recall_vs_items`)."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
from transformers import PreTrainedTokenizerBase

from .. import losses
from ..data.recall_tasks import TaskBatch, TaskDoesNotFit, build_task, build_task_items

LogitsFn = Callable[[torch.Tensor], torch.Tensor]  # input_ids (B, T) -> logits (B, T, V)

# rows per forward pass are chosen so that one batch's logits stay under this many elements (float32: 1 GiB)
LOGITS_BUDGET = 1 << 28


def logits_fn(model: torch.nn.Module) -> LogitsFn:
    """Full-sequence logits of a hybrid or a HF causal LM, on the model's device, as float32 on the CPU."""
    device = next(model.parameters()).device

    def run(input_ids: torch.Tensor) -> torch.Tensor:
        return model(input_ids.to(device)).logits.float().cpu()

    return run


def argmax_hits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced hits: logits (B, T, V) and labels (B, T) aligned with the inputs -> (hits, counted), both
    (B, T-1) bool: the argmax at t - 1 equals labels[t], and labels[t] is counted."""
    logits, targets, counted = losses.next_token_targets(logits, labels)
    return (logits.argmax(-1) == targets) & counted, counted


@torch.no_grad()
def score(fn: LogitsFn, batch: TaskBatch, vocab_size: int) -> dict[str, float]:
    """accuracy: fraction of queries whose answer tokens are all argmax-predicted; token_accuracy: per token."""
    rows_per_pass = max(1, LOGITS_BUDGET // (batch.input_ids.shape[1] * vocab_size))
    correct, counted = [], []
    for start in range(0, len(batch.input_ids), rows_per_pass):
        ids = batch.input_ids[start : start + rows_per_pass]  # (b, T)
        hits, mask = argmax_hits(fn(ids), batch.labels[start : start + rows_per_pass])  # (b, T-1)
        correct.append(hits)
        counted.append(mask)
    return recall_metrics(torch.cat(correct), torch.cat(counted), batch.per_token_queries)


def recall_metrics(correct: torch.Tensor, counted: torch.Tensor, per_token_queries: bool) -> dict[str, float]:
    """score's metrics from teacher-forced hits and the answer tokens counted, both (B, T-1) bool."""
    n_tokens = int(counted.sum())
    if per_token_queries:
        query_right, n_queries = int(correct.sum()), n_tokens
    else:  # one query per row: right when no counted token is wrong
        query_right, n_queries = int((correct | ~counted).all(dim=1).sum()), len(counted)
    return {
        "accuracy": query_right / max(n_queries, 1),
        "token_accuracy": int(correct.sum()) / max(n_tokens, 1),
        "queries": n_queries,
        "answer_tokens": n_tokens,
    }


def recall_suite(
    models: dict[str, LogitsFn],
    tokenizer: PreTrainedTokenizerBase,
    vocab_size: int,
    tasks: Sequence[str],
    train_length: int,
    multiples: Iterable[float],
    num_examples: int,
    seed: int,
    text_format: str = "auto",
    mqar_pairs_per_token: float = 1 / 16,
    min_teacher_accuracy: float | None = None,
    say: Callable[[str], None] = print,
) -> list[dict]:
    """One row per (task, length, model): accuracy, token accuracy and counts; a task too long for a length gets
    rows with accuracy None and the reason under `skipped`. Lengths run shortest first, the teacher (if any) before
    the student; once the teacher scores at most `min_teacher_accuracy` (at chance: the task is beyond the model),
    the student is not scored at that length nor anything at longer ones (rows say why). `say` gets one line per
    (task, length): progress."""
    rows = []
    order = sorted(models, key=lambda name: name != "teacher")
    for task in tasks:
        beyond: str | None = None  # why the teacher's failure skips the rest of this task
        for multiple in sorted(multiples):
            length = int(round(train_length * multiple))
            where = {"task": task, "multiple": multiple, "length": length}
            if beyond is not None:
                rows += [{**where, "model": name, "accuracy": None, "skipped": beyond} for name in order]
                continue
            try:
                batch = build_task(
                    task, tokenizer, vocab_size, length, num_examples, seed, text_format, mqar_pairs_per_token
                )
            except TaskDoesNotFit as reason:
                rows += [{**where, "model": name, "accuracy": None, "skipped": str(reason)} for name in order]
                say(f"recall {task} {multiple:g}x ({length} tokens): skipped, {reason}")
                continue
            scored = []
            for name in order:
                if beyond is not None:
                    rows.append({**where, "model": name, "accuracy": None, "skipped": beyond})
                    continue
                result = score(models[name], batch, vocab_size)
                scored.append(f"{name} {result['accuracy']:.2f}")
                rows.append({**where, "model": name, **result})
                if (
                    name == "teacher"
                    and min_teacher_accuracy is not None
                    and result["accuracy"] <= min_teacher_accuracy
                ):
                    beyond = (
                        f"teacher at chance from {multiple:g}x (accuracy {result['accuracy']:.2f} <= "
                        f"recall.min_teacher_accuracy={min_teacher_accuracy:g})"
                    )
            say(
                f"recall {task} {multiple:g}x ({length} tokens): {', '.join(scored)}"
                + (f"; {beyond}: skipped here and at longer lengths" if beyond else "")
            )
    return rows


def recall_vs_items(
    models: dict[str, LogitsFn],
    tokenizer: PreTrainedTokenizerBase,
    vocab_size: int,
    tasks: Sequence[str],
    items: Iterable[int],
    mqar_length: int,
    max_length: int,
    num_examples: int,
    seed: int,
    text_format: str = "auto",
    say: Callable[[str], None] = print,
) -> list[dict]:
    """One row per (task, number of items, model): MQAR with that many key-value pairs in rows of `mqar_length`
    tokens; Phonebook / copying / needle with that many entries, words or lines (rows as long as they need). A
    setting that does not fit, or is longer than `max_length` tokens, gets rows with accuracy None and `skipped`."""
    rows = []
    for task in tasks:
        for n in sorted(items):
            where = {"task": task, "items": n}
            try:
                batch = build_task_items(task, tokenizer, vocab_size, n, mqar_length, num_examples, seed, text_format)
                if batch.input_ids.shape[1] > max_length:
                    raise TaskDoesNotFit(f"{task}: {n} items need {batch.input_ids.shape[1]} > {max_length} tokens")
            except TaskDoesNotFit as reason:
                rows += [
                    {**where, "length": None, "model": name, "accuracy": None, "skipped": str(reason)}
                    for name in models
                ]
                say(f"recall {task} with {n} items: skipped, {reason}")
                continue
            scored = []
            for name, fn in models.items():
                result = score(fn, batch, vocab_size)
                rows.append({**where, "length": batch.length, "model": name, **result})
                scored.append(f"{name} {result['accuracy']:.2f}")
            say(f"recall {task} with {n} items ({batch.length} tokens): {', '.join(scored)}")
    return rows
