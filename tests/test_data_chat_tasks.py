"""Generated chat tasks: answers recomputed independently from the prompt text; corrupted
answers are plausible and never equal to the correct one; generation is seeded."""

import re
from collections import Counter

import pytest

from hybrid_distill.data.chat_tasks import TASKS, chat_rows, preference_rows, task_examples


def solve(prompt: str) -> str:
    """An independent solver that parses the prompt text of every task."""
    if m := re.fullmatch(r"What is (\d+) ([-+*]) (\d+)\?", prompt):
        a, op, b = int(m[1]), m[2], int(m[3])
        return str({"+": a + b, "-": a - b, "*": a * b}[op])
    if m := re.fullmatch(r"Remember: (.*)\. What is the value of (\w+)\?", prompt):
        return dict(pair.split("=") for pair in m[1].split(", "))[m[2]]
    if m := re.fullmatch(r"Copy exactly: (.*)", prompt):
        return m[1]
    if m := re.fullmatch(r"Sort in ascending order: (.*)", prompt):
        return ", ".join(sorted(m[1].split(", "), key=int))
    if m := re.fullmatch(r"Sort alphabetically: (.*)", prompt):
        return ", ".join(sorted(m[1].split(", ")))
    if m := re.fullmatch(r"Reverse the order: (.*)", prompt):
        return ", ".join(m[1].split(", ")[::-1])
    raise AssertionError(f"unparsed prompt {prompt!r}")


EXAMPLES = task_examples(1000, seed=0)


def test_every_answer_is_correct_and_tasks_are_balanced():
    assert all(solve(ex.prompt) == ex.answer for ex in EXAMPLES)
    assert Counter(ex.task for ex in EXAMPLES) == {name: 200 for name in TASKS}


def test_wrong_answers_differ_and_are_plausible():
    for ex in EXAMPLES:
        assert ex.wrong_answer != ex.answer
        if ex.task == "arithmetic":
            assert abs(int(ex.wrong_answer) - int(ex.answer)) == 1
        elif ex.task == "kv_lookup":
            assert re.search(rf"={ex.wrong_answer}[,.]", ex.prompt)  # another key's value
        elif ex.task in ("sort", "reverse"):
            assert sorted(ex.wrong_answer.split(", ")) == sorted(ex.answer.split(", "))
        else:  # copy: exactly one word replaced
            diffs = [a != b for a, b in zip(ex.answer.split(), ex.wrong_answer.split(), strict=True)]
            assert sum(diffs) == 1


def test_generation_is_seeded():
    assert task_examples(50, seed=3) == task_examples(50, seed=3)
    assert task_examples(50, seed=3) != task_examples(50, seed=4)
    assert chat_rows(5, "train:0") != chat_rows(5, "validation:0")


def test_rows_follow_the_ultrachat_and_ultrafeedback_schemas():
    chat = chat_rows(10, seed=1)
    assert all([m["role"] for m in row["messages"]] == ["user", "assistant"] for row in chat)
    for row, ex in zip(preference_rows(10, seed=1), task_examples(10, seed=1)):
        assert row["chosen"][0] == row["rejected"][0] == {"role": "user", "content": row["prompt"]}
        assert row["chosen"][1]["content"] == ex.answer and row["rejected"][1]["content"] == ex.wrong_answer
        assert row["chosen"] != row["rejected"]


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="unknown chat tasks \\['bogus'\\]"):
        task_examples(3, seed=0, tasks=("copy", "bogus"))
