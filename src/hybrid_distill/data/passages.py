"""Instruction prompts over Shakespeare passages: what a real chat teacher answers for sequence-level KD.

Each row asks one of four things about a short passage of a play (a few consecutive speeches):
- `continue`:   write the next lines; reference = the play's actual next speech;
- `summarise`:  say in a sentence or two what happens; reference = the passage itself (a placeholder);
- `paraphrase`: rewrite one speech in plain modern English; reference = that speech (a placeholder);
- `who_speaks`: which character says a quoted line; reference = the speaker's name (checkable).
Only `continue` and `who_speaks` have true references: the rows are meant as prompts for the teacher
(`stage=seqkd`), whose answers then replace the references.

The generated chat tasks (chat_tasks.py) are mixed in (`task_fraction`), so that the student also sees
short checkable answers. Splits follow the plays: train prompts come from the training plays of
`corpus.shakespeare_documents`, validation and test prompts from its held-out plays, so no run trains on
held-out text or on prompts about it.
"""

from __future__ import annotations

import random
import re

from datasets import Dataset

from hybrid_distill.data import chat_tasks
from hybrid_distill.data.corpus import shakespeare_documents

SOURCE_NAME = "shakespeare_instruct"
ROWS = {"train": 20000, "validation": 400, "test": 400}
INSTRUCTIONS = ("continue", "summarise", "paraphrase", "who_speaks")
MAX_PASSAGE_CHARS = 700
_SPEECH_START = re.compile(r"^([A-Z][A-Za-z .'\-]{1,40}):\s*$")  # "HAMLET:" or "Old Athenian:" alone on its line


def speeches(text: str) -> list[tuple[str, str]]:
    """(speaker, speech) pairs of one play's plain text, in order; headings and stage lines are dropped."""
    out: list[tuple[str, str]] = []
    speaker, lines = None, []
    for line in text.splitlines() + [""]:
        start = _SPEECH_START.match(line.strip())
        if start or not line.strip():
            if speaker and lines:
                out.append((speaker.title(), " ".join(lines)))
            speaker, lines = (start.group(1), []) if start else (None if not line.strip() else speaker, [])
            continue
        if speaker:
            lines.append(line.strip())
    return out


def _render(block: list[tuple[str, str]]) -> str:
    return "\n".join(f"{who}: {words}" for who, words in block)


def _passage(play: list[tuple[str, str]], rng: random.Random) -> tuple[list[tuple[str, str]], int]:
    """A run of 2-5 consecutive speeches of at most MAX_PASSAGE_CHARS characters, and the index after it."""
    start = rng.randrange(len(play) - 6)
    block = [play[start]]
    for speech in play[start + 1 : start + rng.randint(2, 5)]:
        if len(_render(block + [speech])) > MAX_PASSAGE_CHARS:
            break
        block.append(speech)
    return block, start + len(block)


def instruction_row(title: str, play: list[tuple[str, str]], kind: str, rng: random.Random) -> dict:
    """One chat row (UltraChat schema) asking `kind` about a random passage of `play`."""
    block, after = _passage(play, rng)
    name = title.replace("-", " ").title()
    passage = _render(block)[:MAX_PASSAGE_CHARS]
    if kind == "continue":
        prompt = (
            f"Here is a passage from Shakespeare's {name}:\n\n{passage}\n\nContinue the scene with the next speech."
        )
        reference = _render([play[after]])
    elif kind == "summarise":
        prompt = f"Summarise in one or two sentences what happens in this passage from {name}:\n\n{passage}"
        reference = passage
    elif kind == "paraphrase":
        who, words = max(block, key=lambda s: len(s[1]))
        prompt = f"Rewrite this speech by {who} from {name} in plain modern English:\n\n{words[:MAX_PASSAGE_CHARS]}"
        reference = words
    elif kind == "who_speaks":
        who, words = rng.choice(block)
        prompt = (
            f'In this passage from {name}:\n\n{passage}\n\nWhich character says "{words[:120]}"? Answer with the name.'
        )
        reference = who
    else:
        raise ValueError(f"unknown instruction {kind!r}; choose from {', '.join(INSTRUCTIONS)}")
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": reference}]
    return {"messages": messages, "task": kind}


def instruction_rows(num_rows: int, split: str, seed: int = 0, task_fraction: float = 0.25) -> list[dict]:
    """`num_rows` rows of `split`: passage instructions cycling through INSTRUCTIONS over the split's plays,
    and a `task_fraction` share of generated chat tasks; reproducible from (split, seed)."""
    documents = shakespeare_documents()
    plays_split = "train" if split == "train" else "validation"
    plays = [(row["title"], speeches(row["text"])) for row in documents[plays_split]]
    plays = [(title, play) for title, play in plays if len(play) > 10]
    rng = random.Random(f"{split}:{seed}")
    num_tasks = round(num_rows * task_fraction)
    rows = chat_tasks.chat_rows(num_tasks, f"{split}:instruct:{seed}")
    for i in range(num_rows - num_tasks):
        title, play = rng.choice(plays)
        rows.append(instruction_row(title, play, INSTRUCTIONS[i % len(INSTRUCTIONS)], rng))
    rng.shuffle(rows)
    return rows


def instruction_dataset(num_rows: int, seed: int | str) -> Dataset:
    """The loaders' builtin-source signature: `seed` is "<split>:<n>" as for the chat tasks."""
    split, _, n = str(seed).partition(":")
    return Dataset.from_list(instruction_rows(num_rows, split, int(n or 0)))
