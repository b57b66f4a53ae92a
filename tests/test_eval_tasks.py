"""Recall tasks (MQAR, Phonebook, copying, needle) and their teacher-forced scoring."""

from __future__ import annotations

import copy
import random
import re

import pytest
import torch

from hybrid_distill.data.tokenize import IGNORE_INDEX
from hybrid_distill.data.tokenizer import load_or_train_tokenizer
from hybrid_distill.eval.recall import recall_suite, score
from hybrid_distill.data.recall_tasks import (
    Copying,
    Phonebook,
    PromptFormat,
    TaskDoesNotFit,
    build_task,
    mqar,
    mqar_pools,
)


@pytest.fixture(scope="module")
def tokenizer(cache_dir):
    """The tiny preset's tokenizer (trained once per session cache), with a chat template."""
    return load_or_train_tokenizer(cache_dir / "tokenizers", 2048)


def test_mqar_queries_ask_for_the_paired_values():
    V, L, n = 64, 48, 6
    batch = mqar(V, L, n, num_examples=20, generator=torch.Generator().manual_seed(0), reserved=[1, 40], prefix=[0])
    assert batch.input_ids.shape == (20, L) and batch.per_token_queries
    for ids, labels in zip(batch.input_ids.tolist(), batch.labels.tolist()):
        assert ids[0] == 0
        keys, values = ids[1 : 1 + 2 * n : 2], ids[2 : 2 + 2 * n : 2]
        assert all(1 < k < V // 2 for k in keys) and all(V // 2 <= v < V and v != 40 for v in values)
        assert len(set(keys)) == n
        pairs = dict(zip(keys, values))
        answers = [(t, lab) for t, lab in enumerate(labels) if lab != IGNORE_INDEX]
        assert len(answers) == n  # every key queried once
        assert sorted(ids[t - 1] for t, _ in answers) == sorted(keys)
        for t, value in answers:
            assert t > 2 * n and ids[t] == value == pairs[ids[t - 1]]


def test_mqar_reserved_ids_and_filler():
    filler, keys, values = mqar_pools(32, reserved=[1, 2, 20])
    assert filler == 3 and 3 not in keys.tolist() and not {1, 2, 20} & set(keys.tolist() + values.tolist())
    with pytest.raises(TaskDoesNotFit, match="seq_len 10"):
        mqar(32, 10, 4, 1, torch.Generator())


@pytest.mark.parametrize("text_format", ["chat", "plain", "chat_cue"])
def test_text_tasks_fit_the_budget_and_answer_from_the_context(tokenizer, text_format):
    for length in (96, 300):
        for task in ("phonebook", "needle", "copy"):
            batch = build_task(task, tokenizer, len(tokenizer), length, 3, seed=0, text_format=text_format)
            assert batch.input_ids.shape[0] == 3 and not batch.per_token_queries
            for ids, labels in zip(batch.input_ids, batch.labels):
                counted = labels != IGNORE_INDEX
                real = int((ids != tokenizer.pad_token_id).sum())
                assert real <= length and counted.any()
                # the answer is the end of the sequence and sits in labels at its own positions
                assert torch.equal(labels[counted], ids[counted]) and counted.nonzero().max() == real - 1
                prompt = tokenizer.decode(ids[: int(counted.nonzero().min())], skip_special_tokens=True)
                answer = tokenizer.decode(labels[counted]).strip()
                if task == "phonebook":
                    name = re.search(r"(?:Number of |\n)([A-Z]\w+ [A-Z]\w+)[?:]\s*$", prompt).group(1)
                    assert f"{name}: {answer}\n" in prompt
                elif task == "needle":
                    assert f"The secret number is {answer}." in prompt
                else:
                    assert answer in prompt and len(answer.split()) > 3
            assert (batch.input_ids[:, 0] == tokenizer.bos_token_id).all()
    # more budget, more items
    long, short = (build_task("phonebook", tokenizer, len(tokenizer), n, 1, 0, text_format) for n in (300, 96))
    assert long.input_ids.shape[1] > 2 * short.input_ids.shape[1]


def test_chat_cue_starts_the_assistant_reply_with_the_plain_cue(tokenizer):
    """`chat_cue`: the chat prompt, then the plain format's cue as the reply's first words; the answer as in plain."""
    chat, plain, chat_cue = (PromptFormat(tokenizer, style) for style in ("chat", "plain", "chat_cue"))
    assert chat_cue.chat and chat_cue.style == "chat_cue" and chat.style == "chat" and plain.style == "plain"
    for task in (Phonebook(random.Random(0)), Copying(random.Random(1))):
        p = task.prompt(4)
        (chat_prompt, chat_answer), (_, plain_answer) = chat.tokens(p), plain.tokens(p)
        prompt, answer = chat_cue.tokens(p)
        assert prompt[: len(chat_prompt)] == chat_prompt and answer == plain_answer != chat_answer
        assert tokenizer.decode(prompt[len(chat_prompt) :]) == p.cue.lstrip("\n")  # "Alice Adams:" / "Again:"
    no_template = copy.copy(tokenizer)
    no_template.chat_template = None
    with pytest.raises(ValueError, match="chat_cue"):
        PromptFormat(no_template, "chat_cue")
    assert PromptFormat(no_template, "auto").style == "plain"


def test_text_task_too_short_is_reported(tokenizer):
    with pytest.raises(TaskDoesNotFit, match="phonebook: 10 tokens"):
        build_task("phonebook", tokenizer, len(tokenizer), 10, 1, 0)


def oracle(batch, vocab: int, wrong: dict[tuple[int, int], int] | None = None):
    """Logits that predict every label, except at the (row, label position) keys of `wrong`: that token instead."""

    def fn(ids):
        assert torch.equal(ids, batch.input_ids)  # one pass: the logits budget holds every row
        logits = torch.zeros(*ids.shape, vocab)  # (N, T, V)
        targets = batch.labels[:, 1:]  # the logits at t - 1 predict labels[t]
        rows, pos = (targets != IGNORE_INDEX).nonzero(as_tuple=True)
        logits[rows, pos, targets[rows, pos]] = 1.0
        for (row, t), token in (wrong or {}).items():
            logits[row, t - 1] = 0.0
            logits[row, t - 1, token] = 1.0
        return logits

    return fn


def test_score_counts_queries_and_tokens():
    batch = mqar(100, 40, 4, 3, torch.Generator().manual_seed(1))
    assert score(oracle(batch, 100), batch, 100) == {
        "accuracy": 1.0,
        "token_accuracy": 1.0,
        "queries": 12,
        "answer_tokens": 12,
    }
    t = int((batch.labels[1] != IGNORE_INDEX).nonzero()[0])
    assert score(oracle(batch, 100, {(1, t): 0}), batch, 100)["accuracy"] == pytest.approx(11 / 12)


def test_score_one_query_per_row(tokenizer):
    batch = build_task("phonebook", tokenizer, 100, 120, 4, seed=0)
    answer_positions = (batch.labels[2] != IGNORE_INDEX).nonzero()[:, 0]
    wrong_once = score(oracle(batch, 100, {(2, int(answer_positions[1])): 0}), batch, 100)
    n = len(answer_positions)
    assert wrong_once["accuracy"] == 0.75 and wrong_once["queries"] == 4
    assert wrong_once["token_accuracy"] == pytest.approx(1 - 1 / (4 * n))


def test_recall_suite_rows_and_skips(tokenizer):
    rows = recall_suite(
        {"oracle": lambda ids: torch.zeros(*ids.shape, len(tokenizer))},
        tokenizer,
        len(tokenizer),
        ["mqar", "phonebook"],
        train_length=16,
        multiples=[1, 8],
        num_examples=2,
        seed=0,
    )
    assert [(r["task"], r["length"]) for r in rows] == [
        ("mqar", 16),
        ("mqar", 128),
        ("phonebook", 16),
        ("phonebook", 128),
    ]
    assert rows[2]["accuracy"] is None and "cannot hold" in rows[2]["skipped"]
    assert rows[3]["accuracy"] == 0.0 and rows[3]["queries"] == 2


def test_the_recall_suite_stops_where_the_teacher_is_at_chance_and_says_so(tokenizer):
    calls = []

    def blind(ids):  # predicts token 0 everywhere: accuracy 0 on every task (at chance)
        calls.append(ids.shape[1])
        return torch.zeros(*ids.shape, len(tokenizer))

    said = []
    rows = recall_suite(
        {"student": blind, "teacher": blind},
        tokenizer,
        len(tokenizer),
        ["mqar"],
        train_length=64,
        multiples=[2, 1, 4],
        num_examples=2,
        seed=0,
        min_teacher_accuracy=0.0,
        say=said.append,
    )
    assert [(r["multiple"], r["model"], r["accuracy"]) for r in rows] == [
        (1, "teacher", 0.0),
        (1, "student", None),
        (2, "teacher", None),
        (2, "student", None),
        (4, "teacher", None),
        (4, "student", None),
    ]
    assert calls == [64]  # only the teacher at 1x ran
    assert all(r["skipped"].startswith("teacher at chance from 1x") for r in rows[1:])
    assert said == [
        "recall mqar 1x (64 tokens): teacher 0.00; teacher at chance from 1x (accuracy 0.00 <= "
        "recall.min_teacher_accuracy=0): skipped here and at longer lengths"
    ]
    calls.clear()
    full = recall_suite(
        {"student": blind, "teacher": blind},
        tokenizer,
        len(tokenizer),
        ["mqar"],
        train_length=64,
        multiples=[1, 2],
        num_examples=2,
        seed=0,
        min_teacher_accuracy=None,
        say=said.append,
    )
    assert all(r["accuracy"] == 0.0 for r in full) and len(calls) == 4
