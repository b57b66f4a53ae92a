"""Stage `corpus`: the teacher (e.g. `model=smollm2_135m`) writes a text corpus for training from scratch, beyond the
1.5M tokens of the embedded plays: sampled answers to varied chat prompts (a kind of text x a topic, cycled, so
every prompt recurs with another sample), one JSON line `{"text": ..., "prompt": ...}` per document in
`<run dir>/corpus.jsonl`, which `data=recall_mix data.corpus=<that file>` trains on.

Documents are appended after every batch; a stopped run (signal: exit 75) continues with `resume=<run dir>` after
the documents already written. Empty answers are dropped (counted)."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

from omegaconf import DictConfig

from ..console import console
from ..errors import Preempted
from ..reliability.signals import noted_signals
from ..runtime import RunContext, build_logger, finish_logger
from .common import accelerator_device
from .seqkd import generate_responses, saved_answers
from .teacher import obtain_teacher

CORPUS_FILENAME = "corpus.jsonl"
KINDS = (
    "Write a short story about {}.",
    "Explain {} to a curious twelve-year-old.",
    "Write a dialogue between two friends who disagree about {}.",
    "Write a news report about {}.",
    "Describe {} in vivid detail.",
    "Write a letter to a friend about {}.",
    "Give step-by-step practical advice about {}.",
    "Write an encyclopedia entry on {}.",
    "Write a diary entry about {}.",
    "List the most important facts about {}, with a sentence on each.",
)
TOPICS = (
    "the ocean", "a lighthouse keeper", "volcanoes", "the history of bread", "a lost dog", "chess", "the moon landing",
    "bees", "a rainy city", "trains", "the water cycle", "a small bakery", "ancient Rome", "photosynthesis",
    "a mountain village", "learning to swim", "the printing press", "a thunderstorm", "friendship", "electricity",
    "a market day", "glaciers", "a stolen painting", "the human heart", "a garden in spring", "computers",
    "a long journey by ship", "owls", "the first day of school", "a desert", "music", "a family recipe", "rivers",
    "a football match", "the stars", "a broken clock", "forests", "a new neighbour", "bridges", "winter",
    "a detective", "money", "a birthday party", "elephants", "the Olympic Games", "a haunted house", "maps",
    "a kind stranger", "honey", "the wind",
)  # fmt: skip


def corpus_prompts(count: int, seed: int) -> list[list[dict]]:
    """`count` chat prompts: every (kind, topic) pair once in a seeded order, then again in another order, ..."""
    pairs = list(itertools.product(KINDS, TOPICS))
    rng = random.Random(seed)
    prompts: list[list[dict]] = []
    while len(prompts) < count:
        rng.shuffle(pairs)
        prompts += [[{"role": "user", "content": kind.format(topic)}] for kind, topic in pairs]
    return prompts[:count]


def append_documents(path: Path, prompts: list[list[dict]], texts: list[str]) -> None:
    """One JSON line per document (empty answers too: the file's line count is the number of prompts answered)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps({"text": t, "prompt": p[-1]["content"]}) + "\n" for p, t in zip(prompts, texts)))
        f.flush()


def run_corpus(cfg: DictConfig, run: RunContext) -> dict:
    s = cfg.stage
    path = run.output_dir / CORPUS_FILENAME
    prompts = corpus_prompts(int(s.max_documents), int(cfg.seed))
    done = len(saved_answers(path))  # a resumed run continues after the documents already written
    sampling = {"do_sample": True, "temperature": float(s.temperature), "top_p": float(s.top_p)}
    with noted_signals() as stopped:
        teacher, tokenizer = obtain_teacher(cfg, run)
        loggers = build_logger(cfg, run, "corpus")
        if accelerator_device(cfg) is not None:
            teacher = teacher.to(accelerator_device(cfg))
        if done:
            console.print(f"corpus: {done} documents already in {path}; continuing")
        position = done

        def write(texts: list[str]) -> None:
            nonlocal position
            append_documents(path, prompts[position : position + len(texts)], texts)
            position += len(texts)

        try:
            generate_responses(
                teacher,
                tokenizer,
                prompts[done:],
                int(s.max_new_tokens),
                int(s.batch_size),
                write,
                stopped,
                what="corpus generation",
                **sampling,
            )
        except Preempted as err:
            raise Preempted(f"{err}; the documents so far are in {path}") from None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    texts = [r["text"] for r in rows if r["text"]]
    summary = {
        "corpus_documents": len(texts),
        "corpus_empty_skipped": len(rows) - len(texts),
        "corpus_teacher_tokens": sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts),
        "corpus_file": str(path),
    }
    for logger in loggers or []:
        logger.log_metrics({k: v for k, v in summary.items() if isinstance(v, int)}, step=0)
    console.print(f"corpus: {len(texts)} documents, {summary['corpus_teacher_tokens']:,} teacher tokens in {path}")
    return {**summary, "wandb_dir": finish_logger(loggers)}
