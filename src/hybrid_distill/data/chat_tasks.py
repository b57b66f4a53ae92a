"""Generated instruction data: templated tasks with checkable answers, as chat rows
(UltraChat schema) and as preference pairs (UltraFeedback schema) for DPO.

Each task draws one `TaskExample` from a `random.Random`: the prompt, the correct answer and a
plausibly corrupted answer (off-by-one number, one swapped or replaced element, another key's
value) that always differs from the correct one. Sequences stay short (well under 128 tokens
with a 2k-vocabulary tokenizer).
"""

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from datasets import Dataset

WORDS = (
    "apple", "river", "stone", "cloud", "horse", "candle", "garden", "tower", "bread", "mirror",
    "forest", "silver", "window", "crown", "sword", "letter", "bridge", "winter", "summer", "castle",
    "flower", "honey", "lamp", "ocean", "pepper", "queen", "rabbit", "shadow", "thunder", "violet",
    "wagon", "yellow", "anchor", "basket", "copper", "dragon", "feather", "glass", "island", "jewel",
    "kettle", "lemon", "marble", "needle", "orange", "pillow", "ribbon", "saddle", "tiger", "velvet",
)  # fmt: skip


@dataclass(frozen=True)
class TaskExample:
    task: str
    prompt: str
    answer: str
    wrong_answer: str  # plausible corruption of `answer`, never equal to it

    def messages(self, answer: str | None = None) -> list[dict[str, str]]:
        """UltraChat-style conversation: the prompt, then `answer` (default: the correct one)."""
        reply = self.answer if answer is None else answer
        return [{"role": "user", "content": self.prompt}, {"role": "assistant", "content": reply}]


def _swap_adjacent(items: Sequence, rng: random.Random) -> list:
    """`items` with one random pair of neighbours swapped (differs if the items are distinct)."""
    out = list(items)
    i = rng.randrange(len(out) - 1)
    out[i], out[i + 1] = out[i + 1], out[i]
    return out


def key_value_lookup(rng: random.Random) -> TaskExample:
    n = rng.randint(3, 6)
    keys, values = rng.sample(WORDS, n), rng.sample(range(10, 100), n)
    asked, other = rng.sample(range(n), 2)
    pairs = ", ".join(f"{k}={v}" for k, v in zip(keys, values))
    prompt = f"Remember: {pairs}. What is the value of {keys[asked]}?"
    return TaskExample("kv_lookup", prompt, str(values[asked]), str(values[other]))


def copying(rng: random.Random) -> TaskExample:
    words = rng.choices(WORDS, k=rng.randint(3, 7))
    i = rng.randrange(len(words))
    corrupted = list(words)
    corrupted[i] = rng.choice([w for w in WORDS if w != words[i]])
    return TaskExample("copy", f"Copy exactly: {' '.join(words)}", " ".join(words), " ".join(corrupted))


def arithmetic(rng: random.Random) -> TaskExample:
    op = rng.choice("+-*")
    if op == "*":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
    else:
        a, b = sorted((rng.randint(0, 99), rng.randint(0, 99)), reverse=op == "-")  # a - b >= 0
    result = {"+": a + b, "-": a - b, "*": a * b}[op]
    off_by_one = result + rng.choice((-1, 1))
    return TaskExample("arithmetic", f"What is {a} {op} {b}?", str(result), str(off_by_one))


def sorting(rng: random.Random) -> TaskExample:
    n = rng.randint(3, 6)
    if rng.random() < 0.5:
        items, order = [str(x) for x in rng.sample(range(100), n)], "in ascending order"
        ordered = sorted(items, key=int)
    else:
        items, order = rng.sample(WORDS, n), "alphabetically"
        ordered = sorted(items)
    prompt = f"Sort {order}: {', '.join(items)}"
    return TaskExample("sort", prompt, ", ".join(ordered), ", ".join(_swap_adjacent(ordered, rng)))


def reversal(rng: random.Random) -> TaskExample:
    items = rng.sample(WORDS, rng.randint(3, 6))
    reversed_items = items[::-1]
    prompt = f"Reverse the order: {', '.join(items)}"
    return TaskExample("reverse", prompt, ", ".join(reversed_items), ", ".join(_swap_adjacent(reversed_items, rng)))


TASKS: dict[str, Callable[[random.Random], TaskExample]] = {
    "kv_lookup": key_value_lookup,
    "copy": copying,
    "arithmetic": arithmetic,
    "sort": sorting,
    "reverse": reversal,
}


def task_examples(num_rows: int, seed: int | str, tasks: Sequence[str] = tuple(TASKS)) -> list[TaskExample]:
    """`num_rows` examples cycling through `tasks` (balanced), reproducible from `seed`."""
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown chat tasks {sorted(unknown)}; choose from {list(TASKS)}")
    rng = random.Random(seed)
    return [TASKS[tasks[i % len(tasks)]](rng) for i in range(num_rows)]


def chat_rows(num_rows: int, seed: int | str, tasks: Sequence[str] = tuple(TASKS)) -> list[dict]:
    """Rows `{"messages": [user, assistant], "task": name}` (UltraChat schema + task name)."""
    return [{"messages": ex.messages(), "task": ex.task} for ex in task_examples(num_rows, seed, tasks)]


def preference_rows(num_rows: int, seed: int | str, tasks: Sequence[str] = tuple(TASKS)) -> list[dict]:
    """Rows `{"prompt", "chosen", "rejected", "task"}` (UltraFeedback schema): chosen carries the
    correct answer, rejected the corrupted one; both are full conversations."""
    return [
        {"prompt": ex.prompt, "chosen": ex.messages(), "rejected": ex.messages(ex.wrong_answer), "task": ex.task}
        for ex in task_examples(num_rows, seed, tasks)
    ]


def chat_dataset(num_rows: int, seed: int | str, tasks: Sequence[str] = tuple(TASKS)) -> Dataset:
    return Dataset.from_list(chat_rows(num_rows, seed, tasks))


def preference_dataset(num_rows: int, seed: int | str, tasks: Sequence[str] = tuple(TASKS)) -> Dataset:
    return Dataset.from_list(preference_rows(num_rows, seed, tasks))
