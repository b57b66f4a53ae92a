"""Preference pairs made from chat rows: the row's own answer is chosen, another prompt's answer is rejected.

With the teacher's answers (seqkd) as chat rows this is "the teacher's answer vs a corrupted one": the rejected
answer is fluent text from the same teacher that does not answer this prompt, so DPO must learn to follow the
prompt rather than to prefer the teacher's style.
"""

from __future__ import annotations

import random

from datasets import Dataset


def pairs_from_chat(rows: Dataset, seed: int = 0) -> Dataset:
    """UltraFeedback-schema rows (`prompt`, `chosen`, `rejected` conversations) from chat rows with `messages`;
    each rejected answer is the last assistant turn of a different row, chosen by a fixed-seed derangement."""
    if len(rows) < 2:
        raise ValueError(f"pairs_from_chat needs at least 2 chat rows to pair answers, got {len(rows)}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    other = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}  # a cycle: never a row itself
    messages = rows["messages"]
    pairs = []
    for i, conversation in enumerate(messages):
        prompt_turns = conversation[:-1]
        rejected_answer = messages[other[i]][-1]["content"]
        if rejected_answer == conversation[-1]["content"]:  # two prompts with the same answer: no preference
            continue
        pairs.append(
            {
                "prompt": prompt_turns[-1]["content"],
                "chosen": conversation,
                "rejected": [*prompt_turns, {"role": "assistant", "content": rejected_answer}],
            }
        )
    return Dataset.from_list(pairs)
