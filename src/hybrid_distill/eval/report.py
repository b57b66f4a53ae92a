"""Aggregate training runs (a multirun sweep, an Optuna search, a pipeline run, or any directory of runs) into a
markdown table and PNG plots.

    python -m hybrid_distill.report <dir> [--out <dir>] [--throughput rows.jsonl ...]

Rows: one per run, one per step of a pipeline run (`experiment=stepwise`: 0.5 -> 0.75 -> 0.875, each its own row);
a run cut short shows its last validation and where it stopped (report_data.py says what is read from where).
Columns: the settings that vary between rows (a sweep's swept keys, whatever they are, read from the runs'
overrides and the sweeper's search space); the constant ones go to one header line. Outputs: report.md (tables +
plots) and, each only when the runs hold its data, quality_vs_settings.png (quality against each swept setting;
mamba_ratio as the student realised it, Mamba layers / layers), stepwise_curve.png (validation KL and perplexity
over a pipeline's steps one after another), recall_vs_length.png, recall_vs_items.png, throughput_vs_context.png
(medians with their min-max range, also printed in report.md), loss_curves.png, validation_curves.png (one point
per validation). The modules: report_data.py (reading), report_table.py (tables), report_plots.py (plots).
notebooks/results.ipynb renders the same from these functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..errors import UserError
from .report_data import (  # noqa: F401  (the notebook's and tests' names)
    SETTINGS,
    collect,
    eval_rows,
    find_runs,
    interrupted_metrics,
    labels,
    latest_eval,
    loss_curves,
    loss_panels,
    read_throughput_files,
    stepwise_curves,
    validation_curves,
)
from .report_plots import (  # noqa: F401
    figure_quality,
    group_label,
    plot_loss_curves,
    plot_quality,
    plot_recall_vs_items,
    plot_recall_vs_length,
    plot_stepwise,
    plot_throughput,
    plot_validation_curves,
)
from .report_table import (  # noqa: F401
    TABLE_METRICS,
    constants_lines,
    markdown_table,
    seed_table,
    summary_table,
    throughput_table,
)


def build_report(root: Path, out: Path | None = None, throughput_files: Iterable[Path] = ()) -> Path:
    """Write report.md and its plots into `out` (default <root>/report); return report.md's path."""
    runs = collect(root)
    out = out or root / "report"
    out.mkdir(parents=True, exist_ok=True)
    throughput = pd.concat([eval_rows(runs, "throughput"), read_throughput_files(throughput_files)], ignore_index=True)
    plots = [
        plot_quality(runs, out),
        plot_stepwise(stepwise_curves(runs), out),
        plot_recall_vs_length(eval_rows(runs, "recall"), out),
        plot_recall_vs_items(eval_rows(runs, "recall_items"), out),
        plot_throughput(throughput, out),
        plot_loss_curves(loss_curves(runs), out),
        plot_validation_curves(validation_curves(runs), out),
    ]
    lines = [
        f"# Results: {root}",
        "",
        f"{len(runs)} row(s) (a run, or a step of a pipeline run). Training metrics from metrics.json (pipeline steps: "
        "pipeline_state.json; interrupted runs: their last validation); realised_ratio: Mamba layers / layers of the "
        "student's pattern; `eval/...` from each run's eval*.json, each section from the newest file that holds it "
        "(recall@1x / @max: student accuracy averaged over the recall tasks at the training length / the longest "
        "length; recall_items: averaged over the tasks and pair counts).",
        "",
        *(line for text in constants_lines(runs) for line in (text, "")),
        markdown_table(summary_table(runs)),
        "",
    ]
    seeds = seed_table(runs)
    if seeds is not None:
        lines += ["Over seeds (mean ± half the range):", "", markdown_table(seeds), ""]
    speed = throughput_table(throughput)
    if speed is not None:
        lines += ["Throughput (median over repeats [min, max]):", "", markdown_table(speed), ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots if p is not None]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hybrid_distill.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("root", type=Path, help="a multirun sweep directory, a run directory, or any folder of runs")
    parser.add_argument("--out", type=Path, default=None, help="where report.md and the plots go (<root>/report)")
    parser.add_argument(
        "--throughput",
        type=Path,
        nargs="*",
        default=[],
        help="rows.jsonl files from experiments/throughput/bench.py to add to the throughput plot",
    )
    args = parser.parse_args(argv)
    try:
        path = build_report(args.root.resolve(), args.out, args.throughput)
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    print(path.read_text())
    print(f"report: {path}")
