"""The evaluation suite (conf/eval/default.yaml) on a loaded student (and its teacher): held-out quality, recall,
throughput and speculative decoding; results to eval[-N].json and a W&B run. `stages/eval.py` loads the models
from what `ckpt=` names and runs this, for `python eval.py` and for a pipeline's eval step."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from ..console import console
from ..data.build import build_datamodule
from ..errors import TrainingDiverged, UserError
from ..models import param_counts
from ..models.allocation import MAMBA
from ..models.teacher import freeze
from ..paths import config_dir
from ..runtime import RunContext, run_tags
from .loading import RUN_CONFIG, Checkpoint, load_student, resolve_checkpoint, train_length
from .quality import heldout_quality
from .recall import logits_fn, recall_suite, recall_vs_items
from .results import finite_or_none, log_wandb, summary_metrics, write_new_json
from .samples import greedy_samples, held_out_prompts
from .speculative import speculative_benchmark
from ..data.recall_tasks import haystack_lines
from .throughput import throughput_grid


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def quality_data(ck: Checkpoint, source: str | None) -> tuple[DictConfig, str, str]:
    """The data config whose validation split quality is measured on, a description of it, and the config key it
    comes from: chat data from `source` when given, else the run's own data config (a bare student dir: the default
    text data). Preference pairs built from chat data (a DPO run's `pairs_from_chat`) are measured on that chat data:
    perplexity and teacher agreement are per-token measures of answers, not of pairs."""
    run_data = ck.run_cfg.data if ck.run_cfg is not None else None
    if not source and run_data is not None and str(run_data._target_).endswith("PreferenceDataModule"):
        if not run_data.get("pairs_from_chat"):
            raise UserError(
                f"{ck.run_dir}: a DPO run on preference pairs has no held-out answers to measure quality on; "
                "pass suite.quality.source=<chat dataset> (or suite.quality.enabled=false)"
            )
        source = str(run_data.source)
    if source:
        data_cfg = OmegaConf.merge(OmegaConf.load(Path(config_dir()) / "data" / "chat.yaml"), {"source": str(source)})
        key = "suite.quality.source"
    elif run_data is not None:
        data_cfg, key = run_data, f"{ck.run_dir / RUN_CONFIG}: data"
    else:
        data_cfg, key = OmegaConf.load(Path(config_dir()) / "data" / "text.yaml"), "data"
    kind = str(data_cfg._target_).rsplit(".", 1)[-1].removesuffix("DataModule").lower()
    described = f"{kind}" + (f" from {data_cfg.source}" if data_cfg.get("source") else "") + ", validation split"
    return data_cfg, described, key


def quality_section(
    ck: Checkpoint, suite: DictConfig, student, teacher, tokenizer, length: int, cache_dir: str, seed: int
) -> dict:
    data_cfg, described, key = quality_data(ck, suite.quality.get("source"))
    console.print(f"quality: held-out {described}")
    datamodule = build_datamodule(
        data_cfg, tokenizer, int(suite.quality.batch_size), length, str(Path(cache_dir) / "datasets"), seed, key=key
    )
    datamodule.setup("validate")
    return {
        **heldout_quality(student, teacher, datamodule.val_dataloader(), suite.quality.max_batches),
        "data": described,
    }


def speculative_section(suite: DictConfig, student, teacher, tokenizer, device: torch.device) -> dict | None:
    spec = suite.speculative
    if spec.draft == "teacher":
        draft = teacher
    else:
        draft = load_student(resolve_checkpoint(spec.draft), None, None, suite.scan_backend)[0].to(device)
    if draft is None:
        console.print("speculative decoding skipped: no teacher to draft with (suite.teacher=null)")
        return None
    # prompts: held-out text at evenly spaced places (8 characters a token is more than enough text for prompt_len)
    text = "".join(haystack_lines())
    stride = len(text) // int(spec.num_prompts)
    prompts = [
        tokenizer(text[i * stride : i * stride + 8 * int(spec.prompt_len)], return_tensors="pt")["input_ids"][
            :, : int(spec.prompt_len)
        ].to(device)
        for i in range(int(spec.num_prompts))
    ]
    result = speculative_benchmark(
        student, draft, prompts, int(spec.max_new_tokens), int(spec.k), tokenizer.eos_token_id
    )
    return {**result, "draft": str(spec.draft), "device": device.type}


def print_recall(summary: dict) -> None:
    """Recall accuracy as task/model rows by length columns."""
    cells = {}
    for key, value in summary.items():
        if key.startswith("recall/"):
            _, task, multiple, model = key.split("/")
            cells.setdefault((task, model), {})[multiple] = value
    if not cells:
        return
    columns = list(dict.fromkeys(m for row in cells.values() for m in row))
    table = Table(title="recall accuracy (teacher-forced) by length / training length")
    for header in ("task", "model", *columns):
        table.add_column(header)
    for (task, model), row in cells.items():
        table.add_row(task, model, *(f"{row[c]:.2f}" if c in row else "-" for c in columns))
    console.print(table)


def evaluate(
    ck: Checkpoint,
    student,
    teacher,
    tokenizer,
    suite: DictConfig,
    logger_cfg: DictConfig,
    ctx: RunContext,
    seed: int,
    cache_dir: str,
    config: dict[str, Any] | None = None,
) -> dict:
    """Evaluate the student loaded from `ck` (teacher: None or its teacher); write eval[-N].json into its run
    directory (else ctx.output_dir) and a W&B run; return the flat summary plus the JSON's path."""
    device = resolve_device(suite.device)
    student = student.to(device)
    if teacher is not None:
        teacher = freeze(teacher).to(device)
    length = train_length(ck, suite.train_length)
    console.print(
        f"evaluating [bold]{ck.name}[/] (pattern {student.config.pattern}, trained at {length} tokens) "
        f"on {device.type}" + ("" if teacher is not None else ", without a teacher")
    )
    results: dict[str, Any] = {
        "ckpt": ck.name,
        "student_dir": str(ck.student_dir or ""),
        "lightning_ckpt": str(ck.lightning_ckpt or ""),
        "run_dir": str(ck.run_dir or ""),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "pattern": student.config.pattern,
        "mixer": student.config.mixer,
        "train_length": length,
        "mamba_ratio": student.config.pattern.count(MAMBA) / len(student.config.pattern),
        "params": param_counts(student)["total"],
        "teacher": teacher is not None,
        "seed": seed,
        "suite": OmegaConf.to_container(suite, resolve=True),  # what was measured (the file records its own config)
    }
    models = {"student": student, **({"teacher": teacher} if teacher is not None else {})}
    vocab = min(student.config.vocab_size, len(tokenizer))  # ids the tokenizer can produce and the model embeds
    sections = {
        "quality": lambda: quality_section(ck, suite, student, teacher, tokenizer, length, cache_dir, seed),
        "recall": lambda: recall_suite(
            {name: logits_fn(m) for name, m in models.items()},
            tokenizer,
            vocab,
            list(suite.recall.tasks),
            length,
            list(suite.recall.multiples),
            int(suite.recall.num_examples),
            seed,
            suite.recall.text_format,
            float(suite.recall.mqar_pairs_per_token),
            suite.recall.get("min_teacher_accuracy"),
            say=console.print,
        ),
        "recall_items": lambda: recall_vs_items(
            {name: logits_fn(m) for name, m in models.items()},
            tokenizer,
            vocab,
            list(suite.recall_items.tasks),
            list(suite.recall_items.counts),
            length,
            int(suite.recall_items.max_length_multiple * length),
            int(suite.recall_items.num_examples),
            seed,
            suite.recall_items.text_format,
            say=console.print,
        ),
        # the teacher first, so the student's rows carry decode_speedup_vs_teacher
        "throughput": lambda: throughput_grid(
            dict(reversed(list(models.items()))),
            list(suite.throughput.prompt_lens),
            list(suite.throughput.batches),
            int(suite.throughput.new_tokens),
            vocab,
            int(suite.throughput.warmup),
            suite.throughput.prefill_chunk,
            int(suite.throughput.get("repeats", 3)),
            str(suite.throughput.get("engine", "eager")),
        ),
        "speculative": lambda: speculative_section(suite, student, teacher, tokenizer, device),
        "samples": lambda: greedy_samples(
            models,
            tokenizer,
            held_out_prompts(suite.samples.source, int(suite.samples.num_prompts)),
            int(suite.samples.max_new_tokens),
            device,
        ),
    }
    results["seconds"] = {}
    for name, run in sections.items():
        if suite[name].enabled:
            start = time.perf_counter()
            results[name] = run()
            results["seconds"][name] = time.perf_counter() - start
            console.print(f"{name}: done in {results['seconds'][name]:.1f} s")
    non_finite: list[str] = []
    results = finite_or_none(results, non_finite)
    results["non_finite"] = non_finite  # metrics that came out NaN or inf (null in the file): diverged weights
    results["summary"] = summary_metrics(results)
    directory = ck.run_dir or ctx.output_dir
    run_cfg = ck.run_cfg if ck.run_cfg is not None else OmegaConf.create()
    tags = run_tags(
        logger_cfg,
        "eval",
        OmegaConf.select(run_cfg, "model.name", default=None),
        OmegaConf.select(run_cfg, "experiment_name", default=None),
    )
    results["wandb_dir"] = log_wandb(
        logger_cfg,
        results,
        directory,
        name=f"{ctx.name}/eval",
        group=ctx.group,
        config={**(config or {}), "evaluated": {k: results[k] for k in ("ckpt", "pattern", "train_length")}},
        tags=tags,
    )
    path = write_new_json(directory, results)
    if non_finite:
        raise TrainingDiverged(
            f"the evaluation of {ck.name} gave non-finite metrics: {', '.join(non_finite)} are NaN or inf (null in "
            f"{path}, listed under non_finite); its weights have diverged"
        )
    return {**results["summary"], "eval_json": str(path), "wandb_dir": results["wandb_dir"]}
