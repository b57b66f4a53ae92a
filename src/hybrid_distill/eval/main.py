"""`python eval.py ckpt=<run dir | student dir | .ckpt>` (conf/eval.yaml), and `run_eval`, the same evaluation as
a pipeline stage (settings under `stage`, the student under `stage.ckpt`)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from ..cli import exit_on_user_error, print_summary
from ..paths import config_dir
from ..models import param_counts
from ..models.teacher import freeze
from ..runtime import RunContext, job_config
from ..stages.common import build_datamodule
from .loading import Checkpoint, load_student, load_teacher_for, resolve_checkpoint, train_length
from .quality import heldout_quality
from .recall import logits_fn, recall_suite
from .results import log_wandb, summary_metrics, write_new_json
from .speculative import speculative_benchmark
from .tasks import haystack_lines
from .throughput import throughput_grid

console = Console()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def quality_section(ck: Checkpoint, suite: DictConfig, student, teacher, tokenizer, length: int,
                    cache_dir: str, seed: int) -> dict:
    # the run's own data config (its validation split is held out); a bare student dir gets the default text data
    data_cfg = ck.run_cfg.data if ck.run_cfg is not None else OmegaConf.load(Path(config_dir()) / "data" / "text.yaml")
    datamodule = build_datamodule(data_cfg, tokenizer, int(suite.quality.batch_size), length,
                                  str(Path(cache_dir) / "datasets"), seed)
    datamodule.setup("validate")
    return heldout_quality(student, teacher, datamodule.val_dataloader(), suite.quality.max_batches)


def speculative_section(suite: DictConfig, student, teacher, tokenizer, device: torch.device) -> dict | None:
    spec = suite.speculative
    if spec.draft == "teacher":
        draft = teacher
    else:
        draft = load_student(resolve_checkpoint(spec.draft), None, None, suite.scan_backend)[0].to(device)
    if draft is None:
        console.print("speculative decoding skipped: no teacher to draft with (teacher=null)")
        return None
    # prompts: held-out text at evenly spaced places (8 characters a token is more than enough text for prompt_len)
    text = "".join(haystack_lines())
    stride = len(text) // int(spec.num_prompts)
    prompts = [tokenizer(text[i * stride:i * stride + 8 * int(spec.prompt_len)], return_tensors="pt")["input_ids"]
               [:, :int(spec.prompt_len)].to(device) for i in range(int(spec.num_prompts))]
    result = speculative_benchmark(student, draft, prompts, int(spec.max_new_tokens), int(spec.k),
                                   tokenizer.eos_token_id)
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


def run_identity(ck: Checkpoint, output_dir: Path) -> RunContext:
    """The eval's W&B name and group: those of the evaluated training run (as runtime.run_context derived them from
    its Hydra runtime, saved in .hydra/hydra.yaml), so an evaluation sits beside its training runs."""
    hydra_yaml = ck.run_dir / ".hydra" / "hydra.yaml" if ck.run_dir else None
    if hydra_yaml is None or not hydra_yaml.is_file():
        return RunContext(output_dir, "default", "eval")
    hc = OmegaConf.load(hydra_yaml).hydra
    multirun = str(hc.mode) == "RunMode.MULTIRUN"
    run_cfg = ck.run_cfg
    group = f"sweep-{Path(str(hc.sweep.dir)).name}" if multirun else f"{run_cfg.task_name}-{run_cfg.stage.name}"
    return RunContext(output_dir, str(hc.job.override_dirname or "default"),
                      str(run_cfg.get("experiment_name") or group))


def evaluate(ck: Checkpoint, suite: DictConfig, logger_cfg: DictConfig, ctx: RunContext, seed: int,
             cache_dir: str, config: dict[str, Any] | None = None) -> dict:
    """Evaluate one student; write eval[-N].json into its run directory (else ctx.output_dir) and a W&B run;
    return the flat summary plus the JSON's path."""
    device = resolve_device(suite.device)
    teacher, teacher_tokenizer = load_teacher_for(ck, suite.teacher, ctx)
    student, tokenizer = load_student(ck, teacher, teacher_tokenizer, suite.scan_backend)
    student = student.to(device)
    if teacher is not None:
        teacher = freeze(teacher).to(device)
    length = train_length(ck, suite.train_length)
    console.print(f"evaluating [bold]{ck.name}[/] (pattern {student.config.pattern}, trained at {length} tokens) "
                  f"on {device.type}" + ("" if teacher is not None else ", without a teacher"))
    results: dict[str, Any] = {
        "ckpt": ck.name, "student_dir": str(ck.student_dir or ""), "lightning_ckpt": str(ck.lightning_ckpt or ""),
        "run_dir": str(ck.run_dir or ""), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "pattern": student.config.pattern, "mixer": student.config.mixer, "train_length": length,
        "mamba_ratio": student.config.pattern.count("M") / len(student.config.pattern),
        "params": param_counts(student)["total"], "teacher": teacher is not None,
    }
    models = {"student": student, **({"teacher": teacher} if teacher is not None else {})}
    vocab = min(student.config.vocab_size, len(tokenizer))  # ids the tokenizer can produce and the model embeds
    sections = {
        "quality": lambda: quality_section(ck, suite, student, teacher, tokenizer, length, cache_dir, seed),
        "recall": lambda: recall_suite({name: logits_fn(m) for name, m in models.items()}, tokenizer, vocab,
                                       list(suite.recall.tasks), length, list(suite.recall.multiples),
                                       int(suite.recall.num_examples), seed, suite.recall.text_format,
                                       float(suite.recall.mqar_pairs_per_token)),
        # the teacher first, so the student's rows carry decode_speedup_vs_teacher
        "throughput": lambda: throughput_grid(dict(reversed(list(models.items()))), list(suite.throughput.prompt_lens),
                                              list(suite.throughput.batches), int(suite.throughput.new_tokens),
                                              vocab, int(suite.throughput.warmup), suite.throughput.prefill_chunk),
        "speculative": lambda: speculative_section(suite, student, teacher, tokenizer, device),
    }
    results["seconds"] = {}
    for name, run in sections.items():
        if suite[name].enabled:
            start = time.perf_counter()
            results[name] = run()
            results["seconds"][name] = time.perf_counter() - start
            console.print(f"{name}: done in {results['seconds'][name]:.1f} s")
    results["summary"] = summary_metrics(results)
    directory = ck.run_dir or ctx.output_dir
    results["wandb_dir"] = log_wandb(logger_cfg, results, directory, name=f"{ctx.name}/eval", group=ctx.group,
                                     config={**(config or {}), "evaluated": {k: results[k] for k in
                                                                             ("ckpt", "pattern", "train_length")}})
    path = write_new_json(directory, results)
    console.print(f"results: {path}")
    return {**results["summary"], "eval_json": str(path), "wandb_dir": results["wandb_dir"]}


def run_eval(cfg: DictConfig, run: RunContext) -> dict:
    """Stage `eval` (for stage=pipeline): the suite's settings live under cfg.stage, the student at cfg.stage.ckpt."""
    return evaluate(resolve_checkpoint(cfg.stage.ckpt), cfg.stage, cfg.logger, run, int(cfg.seed),
                    str(cfg.paths.cache_dir), job_config(cfg))


def evaluate_from_config(cfg: DictConfig) -> dict:
    """What `python eval.py` does with its composed config (conf/eval.yaml)."""
    start = time.perf_counter()
    ck = resolve_checkpoint(cfg.ckpt)
    output_dir = Path(HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = evaluate(ck, cfg.suite, cfg.logger, run_identity(ck, output_dir), int(cfg.seed),
                       str(cfg.paths.cache_dir), job_config(cfg))
    print_summary({k: v for k, v in summary.items() if not k.startswith("recall/")}, output_dir,
                  time.perf_counter() - start)
    print_recall(summary)
    return summary


@hydra.main(config_path=config_dir(), config_name="eval", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    exit_on_user_error(evaluate_from_config, cfg)


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
