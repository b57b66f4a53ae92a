"""Where evaluation results go: a JSON file in the evaluated run's directory, and a W&B run (tables + summary)."""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..atomic import write_new_file
from ..runtime import save_code, wandb_mode

RESULTS_STEM = "eval"
TABLES = (
    "recall",
    "recall_items",
    "throughput",
    "samples",
)  # list-of-rows sections of the results, logged as W&B tables


def write_new_json(directory: Path, payload: dict[str, Any], stem: str = RESULTS_STEM) -> Path:
    """Write `payload` as <stem>.json, or <stem>-2.json, -3, ... if earlier evaluations are there; never overwrites,
    never leaves half a file (atomic.write_new_file). NaN / inf is refused: JSON has neither (see finite_or_none)."""
    directory.mkdir(parents=True, exist_ok=True)
    names = (directory / (f"{stem}.json" if n == 1 else f"{stem}-{n}.json") for n in range(1, 10_000))
    text = json.dumps(payload, indent=2, default=float, allow_nan=False)
    return write_new_file(names, lambda tmp: tmp.write_text(text))


def finite_or_none(node: Any, found: list[str], key: str = "") -> Any:
    """`node` with None (JSON's null) in place of each NaN / inf number, whose dotted key (list rows as [i]) is
    appended to `found`: Python's json would write them as `NaN`, which is not JSON."""
    if isinstance(node, dict):
        return {k: finite_or_none(v, found, f"{key}.{k}" if key else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [finite_or_none(v, found, f"{key}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, numbers.Real) and not math.isfinite(node):
        found.append(key)
        return None
    return node


def results_files(directory: Path, stem: str = RESULTS_STEM) -> list[Path]:
    """Evaluation results of a run directory, oldest first (eval.json, eval-2.json, ...)."""
    numbered = []
    for path in directory.glob(f"{stem}*.json"):
        match = re.fullmatch(rf"{re.escape(stem)}(?:-(\d+))?", path.stem)
        if match:
            numbered.append((int(match.group(1) or 1), path))
    return [path for _, path in sorted(numbered)]


def summary_metrics(results: dict[str, Any]) -> dict[str, float]:
    """Flat scalars for the W&B summary and the report: quality, recall accuracy per task/length/model,
    speculative decoding, and the decode speedup at each throughput setting (the median over repeats, with its
    range as `.../min` and `.../max`)."""
    out = {f"quality/{k}": v for k, v in (results.get("quality") or {}).items()}
    for row in results.get("recall") or []:
        if row["accuracy"] is not None:
            out[f"recall/{row['task']}/{row['multiple']:g}x/{row['model']}"] = row["accuracy"]
    for row in results.get("recall_items") or []:
        if row["accuracy"] is not None:
            out[f"recall_items/{row['task']}/{row['items']}/{row['model']}"] = row["accuracy"]
    for row in results.get("throughput") or []:
        for key, value in row.items():
            if key.startswith("decode_speedup_vs_"):
                out[f"throughput/{key}/L{row['prompt_len']}/B{row['batch']}"] = value
            elif key.startswith("decode_speedup_range_vs_") and value:  # the median's measured range beside it
                name = f"throughput/{key.replace('_range', '')}/L{row['prompt_len']}/B{row['batch']}"
                out[f"{name}/min"], out[f"{name}/max"] = value
    for key, value in (results.get("speculative") or {}).items():
        if isinstance(value, (int, float)):
            out[f"speculative/{key}"] = value
    return out


def log_wandb(
    logger_cfg: DictConfig,
    results: dict[str, Any],
    directory: Path,
    name: str,
    group: str,
    config: dict[str, Any],
    tags: list[str],
) -> str | None:
    """One W&B run (job_type eval) under `directory`/wandb: every list section as a table, scalars as summary.
    Returns the run's local directory, or None when logger.name is not wandb."""
    if logger_cfg.name != "wandb":
        return None
    import wandb

    mode = wandb_mode(logger_cfg.mode)
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(
        project=logger_cfg.project,
        entity=logger_cfg.entity,
        group=group,
        name=name,
        job_type="eval",
        tags=tags,
        dir=str(directory),
        mode=mode,
        config=config,
    )
    save_code(run, logger_cfg)
    for section in TABLES:
        rows = results.get(section) or []
        if rows:
            columns = sorted({key for row in rows for key in row})
            run.log(
                {f"eval/{section}": wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])}
            )
    run.summary.update({f"eval/{k}": v for k, v in summary_metrics(results).items()})
    local = str(Path(run.dir).parent)
    run.finish()
    return local
