"""The report's tables: one row per run (or pipeline step) with the settings that vary as columns and the others in
a header line, the spread over seeds, and the measured throughput with its range."""

from __future__ import annotations

import math

import pandas as pd

from .report_data import SETTINGS, setting_columns, varying

# training metrics (metrics.json) and evaluation metrics (eval summary) shown in the table, in this order
TABLE_METRICS = (
    "status",
    "pattern",
    "realised_ratio",
    "params/total",
    "tokens_seen",
    "lm_loss",
    "student_ppl",
    "teacher_ppl",
    "kl",
    "top1_agree",
    "eval/quality/student_ppl",
    "eval/quality/kl",
    "eval/quality/top1_agree",
    "eval/recall@1x",
    "eval/recall@max",
    "eval/recall_items",
)
# metrics of which the seed table gives mean and spread over the seeds of each setting
SEED_METRICS = ("lm_loss", "student_ppl", "kl", "eval/recall@1x", "eval/recall@max", "eval/recall_items")
LABELS = ("step",)  # settings a row's label already names


def cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def table_settings(runs: pd.DataFrame) -> list[str]:
    """The setting columns the table shows: those that vary between rows (swept keys first)."""
    return [c for c in varying(runs, setting_columns(runs)) if c not in LABELS]


def constant_settings(runs: pd.DataFrame) -> dict[str, object]:
    """Settings with one value in every row (a sweep's fixed keys, the shrunk preset's overrides, ...)."""
    shown = set(varying(runs, setting_columns(runs)))
    return {
        c: runs[c].iloc[0]
        for c in setting_columns(runs)
        if c in runs and c not in shown and c not in LABELS and runs[c].notna().all()
    }


def constants_lines(runs: pd.DataFrame) -> list[str]:
    """The header lines naming the constant settings (the table's columns are the ones that vary): the named
    settings and searched keys, then the other command-line overrides every row shares."""
    constants = constant_settings(runs)
    named = [*SETTINGS, *(runs.attrs.get("searched") or {})]

    def listed(keys) -> str:
        return ", ".join(f"`{k}={cell(constants[k])}`" for k in keys) or "-"

    lines = [f"Same in every row: {listed(k for k in constants if k in named)}."]
    common = [k for k in constants if k not in named]
    return lines + ([f"Overrides common to every row: {listed(common)}."] if common else [])


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Label, the settings that vary across rows, then the metrics present. A sweep over mamba_ratio is sorted by
    it; a pipeline's steps stay in their order."""
    settings = table_settings(runs)
    metrics = [c for c in TABLE_METRICS if c in runs and runs[c].notna().any()]
    table = runs[["run", *settings, *metrics]]
    pipeline = "step" in runs and runs["step"].notna().any()
    if "mamba_ratio" in settings and not pipeline:
        table = table.sort_values("mamba_ratio", kind="stable")
    return table


def seed_table(runs: pd.DataFrame) -> pd.DataFrame | None:
    """Mean and spread (max - min) over seeds of each setting, when the runs hold more than one seed of a setting:
    the run-to-run noise that a difference between settings has to exceed."""
    if "seed" not in runs or runs["seed"].nunique() < 2:
        return None
    keys = [c for c in table_settings(runs) if c != "seed"]
    metrics = [m for m in SEED_METRICS if m in runs and runs[m].notna().any()]
    if not keys or not metrics:
        return None
    rows = []
    for key, group in runs.groupby(keys, dropna=False, sort=True):
        values = key if isinstance(key, tuple) else (key,)
        row = {**dict(zip(keys, values)), "seeds": int(group["seed"].nunique())}
        for m in metrics:
            col = group[m].dropna()
            row[m] = f"{col.mean():.4g} ± {(col.max() - col.min()) / 2:.2g}" if len(col) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def speedup_column(throughput: pd.DataFrame) -> str | None:
    """The throughput rows' speedup column (`decode_speedup_vs_<first model>`), if any."""
    return next((c for c in throughput if c.startswith("decode_speedup_vs_")), None)


def with_range(median: float, low, high) -> str:
    """`1.094 [0.57, 1.38]`: a median with the range it was measured in (the median alone when no range)."""
    if low is None or (isinstance(low, float) and math.isnan(low)):
        return f"{median:.4g}"
    return f"{median:.4g} [{low:.3g}, {high:.3g}]"


def speedup_range(row: pd.Series, column: str) -> tuple[float, float] | tuple[None, None]:
    """(min, max) of a row's paired speedups over repeats (eval's throughput rows), (None, None) for one
    measurement (experiments/throughput/bench.py's rows)."""
    spread = row.get(column.replace("decode_speedup_vs_", "decode_speedup_range_vs_"))
    if isinstance(spread, (list, tuple)) and len(spread) == 2:
        return float(spread[0]), float(spread[1])
    return None, None


def throughput_table(throughput: pd.DataFrame) -> pd.DataFrame | None:
    """Decode tokens/s and speedup over the first model (the teacher), each a median over repeats with its measured
    range: a median alone hides that a 1.09x speedup was measured anywhere from 0.57x to 1.38x."""
    column = None if throughput.empty else speedup_column(throughput)
    if column is None:
        return None
    rows = []
    for _, row in throughput[throughput[column].notna()].iterrows():
        low, high = speedup_range(row, column)
        repeats = row.get("repeats")
        rows.append(
            {
                "run": row["run"],
                "model": row["model"],
                "prompt_len": int(row["prompt_len"]),
                "batch": int(row["batch"]),
                "repeats": int(repeats) if isinstance(repeats, (int, float)) and not math.isnan(repeats) else 1,
                "decode tok/s [min, max]": with_range(
                    row["decode_tok_s"], row.get("decode_tok_s_min"), row.get("decode_tok_s_max")
                ),
                f"{column.removeprefix('decode_')} [min, max]": with_range(row[column], low, high),
            }
        )
    return pd.DataFrame(rows)
