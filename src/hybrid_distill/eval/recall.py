"""Teacher-forced scoring of recall tasks, and the suite: every task at every multiple of the training length,
for every model (student, teacher), on the same examples."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
from transformers import PreTrainedTokenizerBase

from .. import losses
from .tasks import TaskBatch, TaskDoesNotFit, build_task

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
        ids = batch.input_ids[start:start + rows_per_pass]  # (b, T)
        hits, mask = argmax_hits(fn(ids), batch.labels[start:start + rows_per_pass])  # (b, T-1)
        correct.append(hits)
        counted.append(mask)
    correct, counted = torch.cat(correct), torch.cat(counted)
    n_tokens = int(counted.sum())
    if batch.per_token_queries:
        query_right, n_queries = int(correct.sum()), n_tokens
    else:  # one query per row: right when no counted token is wrong
        query_right, n_queries = int((correct | ~counted).all(dim=1).sum()), len(counted)
    return {
        "accuracy": query_right / max(n_queries, 1),
        "token_accuracy": int(correct.sum()) / max(n_tokens, 1),
        "queries": n_queries,
        "answer_tokens": n_tokens,
    }


def recall_suite(models: dict[str, LogitsFn], tokenizer: PreTrainedTokenizerBase, vocab_size: int,
                 tasks: Sequence[str], train_length: int, multiples: Iterable[float], num_examples: int, seed: int,
                 text_format: str = "auto", mqar_pairs_per_token: float = 1 / 16) -> list[dict]:
    """One row per (task, length, model): accuracy, token accuracy and counts; a task too long for a length gets
    rows with accuracy None and the reason under `skipped`."""
    rows = []
    for task in tasks:
        for multiple in multiples:
            length = int(round(train_length * multiple))
            try:
                batch = build_task(task, tokenizer, vocab_size, length, num_examples, seed, text_format,
                                   mqar_pairs_per_token)
            except TaskDoesNotFit as reason:
                rows += [{"task": task, "multiple": multiple, "length": length, "model": name, "accuracy": None,
                          "skipped": str(reason)} for name in models]
                continue
            for name, fn in models.items():
                rows.append({"task": task, "multiple": multiple, "length": length, "model": name,
                             **score(fn, batch, vocab_size)})
    return rows
