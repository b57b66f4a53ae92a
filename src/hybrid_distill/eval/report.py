"""Aggregate training runs (a multirun sweep, or any directory of runs) into a markdown table and PNG plots.

    python -m hybrid_distill.report <sweep dir> [--out <dir>] [--throughput rows.jsonl ...]

A run is a directory with a metrics.json (what `python train.py` writes when it finishes), or, for a run that was
cut short, its <stage>/metrics.csv (its last validation fills the table, its status says where it stopped); its
.hydra/config.yaml gives the swept settings (arch, mamba_ratio, loss, scan backend, mixer, seed), its eval*.json
(`python eval.py`; each section from the newest file that holds it) the evaluation, and its <stage>/metrics.csv the
logged curves. Outputs: report.md (table + plots) and quality_vs_ratio.png (interrupted runs as open markers),
recall_vs_length.png, throughput_vs_context.png, loss_curves.png, validation_curves.png - each only when the runs
hold its data.
notebooks/results.ipynb renders the same from these functions.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Iterable

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from ..errors import UserError  # noqa: E402
from .results import results_files  # noqa: E402

# swept settings read from each run's config: column -> config key
SETTINGS = {
    "arch": "stage.arch",  # runs trained from scratch (stage=scratch)
    "mamba_ratio": "mamba_ratio",
    "loss": "loss.name",
    "backend": "scan_backend",
    "mixer": "student.mixer",
    "stage": "stage.name",
    "seed": "seed",
}
# training metrics (metrics.json) and evaluation metrics (eval summary) shown in the table, in this order
TABLE_METRICS = (
    "status",
    "pattern",
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
# validation metrics in a stage's metrics.csv -> their name in metrics.json
VALIDATION_METRICS = {
    "val/student_ppl": "student_ppl",
    "val/teacher_ppl": "teacher_ppl",
    "val/kl": "kl",
    "val/top1_agree": "top1_agree",
}
# metrics of which the seed table gives mean and spread over the seeds of each setting
SEED_METRICS = ("lm_loss", "student_ppl", "kl", "eval/recall@1x", "eval/recall@max", "eval/recall_items")


def find_runs(root: Path) -> list[Path]:
    """Run directories at or under `root`, sorted (multirun job numbers numerically): finished runs (a metrics.json)
    and interrupted ones (a <stage>/metrics.csv but no metrics.json, and not inside a finished run - a cut GPU
    job or a preempted one still shows how far it got)."""
    if not root.is_dir():
        raise UserError(f"report: '{root}' is not a directory")
    finished = {p.parent for p in root.rglob("metrics.json") if "wandb" not in p.parts}
    logged = {p.parent.parent for p in root.rglob("*/metrics.csv") if "wandb" not in p.parts}
    interrupted = {run for run in logged - finished if not finished.intersection(run.parents)}
    runs = finished | interrupted
    if not runs:
        raise UserError(f"report: no runs under '{root}' (no metrics.json or <stage>/metrics.csv found)")
    return sorted(
        runs, key=lambda p: [int(s) if s.isdigit() else math.inf for s in p.relative_to(root).parts] + [str(p)]
    )


def interrupted_metrics(run: Path) -> dict:
    """What an interrupted run logged: its last validation (named as metrics.json names them), the tokens it saw,
    its pattern, and `status` saying where it stopped."""
    frame = pd.concat([pd.read_csv(csv) for csv in sorted(run.glob("*/metrics.csv"))], ignore_index=True)
    record = {"status": f"interrupted at step {int(frame['step'].max())}"}
    validated = frame.dropna(subset=[c for c in VALIDATION_METRICS if c in frame])
    if not validated.empty:
        last = validated.loc[validated["step"].idxmax()]
        record.update({name: float(last[col]) for col, name in VALIDATION_METRICS.items() if col in last})
        record["status"] += f" (last validation at step {int(last['step'])})"
    if "train/tokens_seen" in frame and frame["train/tokens_seen"].notna().any():
        record["tokens_seen"] = int(frame["train/tokens_seen"].max())
    hparams = next(iter(sorted(run.glob("*/hparams.yaml"))), None)
    if hparams is not None and "pattern" in (saved := OmegaConf.load(hparams)):
        record["pattern"] = str(saved.pattern)
    return record


def latest_eval(run: Path) -> dict | None:
    """The run's evaluations merged, each section from the newest eval*.json that holds it: a run evaluated in two
    passes (recall in parallel with other runs, then throughput alone on the GPU) keeps both; the summary's keys
    likewise, newest first."""
    merged: dict = {}
    for path in results_files(run):
        for key, value in json.loads(path.read_text()).items():
            if key == "summary":
                merged.setdefault("summary", {}).update(value)
            elif value not in (None, [], {}):
                merged[key] = value
    return merged or None


def _overrides(run: Path) -> list[str]:
    path = run / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.is_file() else []


def labels(runs: list[Path], root: Path) -> list[str]:
    """Each run's command-line overrides that differ between the runs (a sweep's swept values), else its folder."""
    overrides = [_overrides(run) for run in runs]
    common = set.intersection(*(set(o) for o in overrides)) if len(runs) > 1 else set()
    return [
        ",".join(o for o in own if o not in common) or (str(run.relative_to(root)) if run != root else run.name)
        for run, own in zip(runs, overrides)
    ]


def _recall_means(rows: list[dict]) -> dict[float, float]:
    """Student accuracy per length multiple, averaged over tasks (tasks skipped at a length left out)."""
    frame = pd.DataFrame([r for r in rows if r["model"] == "student" and r.get("accuracy") is not None])
    return {} if frame.empty else frame.groupby("multiple")["accuracy"].mean().to_dict()


def collect(root: Path) -> pd.DataFrame:
    """One row per run: label, settings, training metrics, and the newest evaluation's summary (`eval/...`)."""
    records = []
    runs = find_runs(root)
    for run, label in zip(runs, labels(runs, root)):
        cfg_path = run / ".hydra" / "config.yaml"
        cfg = OmegaConf.load(cfg_path) if cfg_path.is_file() else OmegaConf.create()
        if isinstance(cfg.get("scan_backend"), DictConfig):  # runs made while scan_backend was a group {name: ...}
            cfg.scan_backend = cfg.scan_backend.name
        record = {"run": label, "dir": str(run)}
        record.update({col: OmegaConf.select(cfg, key, default=None) for col, key in SETTINGS.items()})
        if (run / "metrics.json").is_file():
            metrics = {"status": "finished", **json.loads((run / "metrics.json").read_text())}
        else:
            metrics = interrupted_metrics(run)
        record.update({k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and not k.endswith("_dir")})
        evaluation = latest_eval(run)
        if evaluation:
            record.update({f"eval/{k}": v for k, v in evaluation["summary"].items()})
            means = _recall_means(evaluation.get("recall") or [])
            if means:
                record["eval/recall@1x"] = means.get(1, means[min(means)])
                record["eval/recall@max"] = means[max(means)]
            scored = [
                r["accuracy"]
                for r in evaluation.get("recall_items") or []
                if r["model"] == "student" and r["accuracy"] is not None
            ]
            if scored:  # mean student accuracy over the tasks and pair counts scored
                record["eval/recall_items"] = sum(scored) / len(scored)
            if record.get("mamba_ratio") is None:
                record["mamba_ratio"] = evaluation["mamba_ratio"]
        records.append(record)
    return pd.DataFrame(records)


def eval_rows(runs: pd.DataFrame, section: str) -> pd.DataFrame:
    """The list section (`recall` or `throughput`) of every run's newest evaluation, with the run's label."""
    frames = []
    for label, directory in zip(runs["run"], runs["dir"]):
        evaluation = latest_eval(Path(directory))
        if evaluation and evaluation.get(section):
            frames.append(pd.DataFrame(evaluation[section]).assign(run=label))
    return _concat(frames)


def markdown_table(frame: pd.DataFrame) -> str:
    def cell(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Settings that vary across runs (all of them if none vary), then the metrics present."""
    varying = [c for c in SETTINGS if c in runs and runs[c].nunique(dropna=False) > 1] or [
        c for c in SETTINGS if c in runs and runs[c].notna().any()
    ]
    metrics = [c for c in TABLE_METRICS if c in runs]
    return runs[["run", *varying, *metrics]].sort_values([c for c in ("mamba_ratio",) if c in varying] or ["run"])


def seed_table(runs: pd.DataFrame) -> pd.DataFrame | None:
    """Mean and spread (max - min) over seeds of each setting, when the runs hold more than one seed of a setting:
    the run-to-run noise that a difference between settings has to exceed."""
    if "seed" not in runs or runs["seed"].nunique() < 2:
        return None
    keys = [c for c in SETTINGS if c != "seed" and c in runs and runs[c].nunique(dropna=False) > 1]
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


# ---------------------------------------------------------------- plots (each returns its file, or None)


def group_label(columns: list[str], key) -> str:
    """A legend entry for a pandas groupby key: `loss=kl, backend=triton` (pandas gives tuples, even for one column)."""
    values = key if isinstance(key, tuple) else (key,)
    return ", ".join(f"{c}={v}" for c, v in zip(columns, values)) or "all runs"


def plot_quality_vs_ratio(runs: pd.DataFrame, out: Path) -> Path | None:
    metrics = [m for m in ("student_ppl", "kl", "top1_agree") if m in runs]
    if "mamba_ratio" not in runs or not metrics or runs["mamba_ratio"].isna().all():
        return None
    groups = [c for c in ("loss", "backend", "mixer") if c in runs and runs[c].nunique() > 1]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for key, group in runs.groupby(groups) if groups else [((), runs)]:
            group = group.sort_values("mamba_ratio")
            line = ax.plot(group["mamba_ratio"], group[metric], marker="o", label=group_label(groups, key))[0]
            cut = group[group["status"] != "finished"]
            ax.scatter(cut["mamba_ratio"], cut[metric], facecolors="white", edgecolors=line.get_color(), zorder=3)
        if metric == "student_ppl" and "teacher_ppl" in runs:
            ax.axhline(runs["teacher_ppl"].mean(), color="gray", ls="--", label="teacher")
        ax.set(xlabel="mamba_ratio", ylabel=metric, title=f"{metric} vs mamba_ratio (open: interrupted)")
        ax.legend(fontsize=7)
    return _save(fig, out / "quality_vs_ratio.png")


def plot_recall_vs_length(recall: pd.DataFrame, out: Path) -> Path | None:
    if recall.empty or recall["accuracy"].isna().all():
        return None
    tasks = list(dict.fromkeys(recall["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = recall[(recall["task"] == task) & recall["accuracy"].notna()]
        for (run, model), group in rows.groupby(["run", "model"], sort=False):
            if model == "teacher" and run != rows["run"].iloc[0]:
                continue  # the same teacher in every run of a sweep: draw it once
            ax.plot(
                group["multiple"],
                group["accuracy"],
                marker="o",
                ls="--" if model == "teacher" else "-",
                label="teacher" if model == "teacher" else run,
            )
        ax.set(xscale="log", xlabel="length / training length", ylabel="accuracy", ylim=(-0.02, 1.02), title=task)
        ax.legend(fontsize=6)
    return _save(fig, out / "recall_vs_length.png")


def plot_recall_vs_items(rows: pd.DataFrame, out: Path) -> Path | None:
    """Student accuracy per task as the number of key-value pairs / entries / words grows, one line per run."""
    if rows.empty or rows["accuracy"].isna().all():
        return None
    rows = rows[(rows["model"] == "student") & rows["accuracy"].notna()]
    tasks = list(dict.fromkeys(rows["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for run, group in rows[rows["task"] == task].groupby("run", sort=False):
            ax.plot(group["items"], group["accuracy"], marker="o", label=run)
        ax.set(xscale="log", xlabel="key-value pairs / items", ylabel="accuracy", ylim=(-0.02, 1.02), title=task)
        ax.legend(fontsize=6)
    return _save(fig, out / "recall_vs_items.png")


def plot_throughput(throughput: pd.DataFrame, out: Path) -> Path | None:
    if throughput.empty or "decode_tok_s" not in throughput:
        return None
    rows = throughput[throughput["decode_tok_s"].notna()]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for (run, model, batch), group in rows.groupby(["run", "model", "batch"], sort=False):
        group = group.sort_values("prompt_len")
        ax.plot(
            group["prompt_len"],
            group["decode_tok_s"],
            marker="o",
            ls="--" if model == "teacher" else "-",
            label=f"{run}: {model}, batch {batch}",
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="prompt length (tokens)",
        ylabel="decode tokens/s",
        title="generation throughput vs context",
    )
    ax.legend(fontsize=6)
    return _save(fig, out / "throughput_vs_context.png")


def _stage_logs(runs: pd.DataFrame):
    """(run label, its loss config, stage, the stage's metrics.csv as a frame) for every logged stage of every run."""
    losses = runs["loss"] if "loss" in runs else [None] * len(runs)
    for label, directory, loss in zip(runs["run"], runs["dir"], losses):
        for csv in sorted(Path(directory).glob("*/metrics.csv")):
            yield label, loss, csv.parent.name, pd.read_csv(csv)


def _curve(label: str, stage: str, frame: pd.DataFrame, metric: str, **columns) -> pd.DataFrame:
    """One metric's logged values per step: columns run, stage, step, metric, `columns`, value."""
    rows = frame[["step", metric]].dropna()
    return pd.DataFrame(
        {"run": label, "stage": stage, "step": rows["step"], "metric": metric, **columns, "value": rows[metric]}
    )


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def loss_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run's logged training loss per step: columns run, stage, step, metric, objective, value. `objective`
    names what the value measures: train/loss is a different mix for every `loss` config, so it carries the loss."""
    frames = []
    for label, loss, stage, frame in _stage_logs(runs):
        metric = next((c for c in ("train/loss", "train/ce", "train/divergence") if c in frame), None)
        if metric is None or frame[metric].isna().all():
            continue
        objective = f"{metric} ({loss})" if metric == "train/loss" and loss else metric
        frames.append(_curve(label, stage, frame, metric, objective=objective))
    return _concat(frames)


def loss_panels(curves: pd.DataFrame) -> list[tuple[str, str]]:
    """(stage, objective) of each loss-curve panel: one objective per axis, never two losses on one scale."""
    return list(dict.fromkeys(zip(curves["stage"], curves["objective"])))


def _plot_panels(curves: pd.DataFrame, panel: str, path: Path, marker: str | None = None) -> Path | None:
    """One axis per (stage, value of column `panel`), one line per run; perplexities on a log scale."""
    if curves.empty:
        return None
    panels = list(dict.fromkeys(zip(curves["stage"], curves[panel])))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, (stage, name) in zip(axes[0], panels):
        rows = curves[(curves["stage"] == stage) & (curves[panel] == name)]
        for run, group in rows.groupby("run", sort=False):
            ax.plot(group["step"], group["value"], marker=marker, label=run)
        ax.set(xlabel="step", ylabel=name, title=f"{stage}: {name}", yscale="log" if "ppl" in name else "linear")
        ax.legend(fontsize=6)
    return _save(fig, path)


def plot_loss_curves(curves: pd.DataFrame, out: Path) -> Path | None:
    return _plot_panels(curves, "objective", out / "loss_curves.png")


def validation_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run's validation metrics per step (columns run, stage, step, metric, value): the quality measure of a
    distillation (KL to the teacher, perplexity) as training goes, comparable across loss mixes, unlike train/loss."""
    return _concat(
        [
            _curve(label, stage, frame, metric)
            for label, _, stage, frame in _stage_logs(runs)
            for metric in ("val/kl", "val/student_ppl")
            if metric in frame and frame[metric].notna().any()
        ]
    )


def plot_validation_curves(curves: pd.DataFrame, out: Path) -> Path | None:
    return _plot_panels(curves, "metric", out / "validation_curves.png", marker="o")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def read_throughput_files(paths: Iterable[Path]) -> pd.DataFrame:
    """rows.jsonl files of experiments/throughput/bench.py, labelled by their folder."""
    frames = [pd.read_json(p, lines=True).assign(run=p.parent.name) for p in paths]
    return _concat(frames)


def build_report(root: Path, out: Path | None = None, throughput_files: Iterable[Path] = ()) -> Path:
    """Write report.md and its plots into `out` (default <root>/report); return report.md's path."""
    runs = collect(root)
    out = out or root / "report"
    out.mkdir(parents=True, exist_ok=True)
    throughput = pd.concat([eval_rows(runs, "throughput"), read_throughput_files(throughput_files)], ignore_index=True)
    plots = [
        plot_quality_vs_ratio(runs, out),
        plot_recall_vs_length(eval_rows(runs, "recall"), out),
        plot_recall_vs_items(eval_rows(runs, "recall_items"), out),
        plot_throughput(throughput, out),
        plot_loss_curves(loss_curves(runs), out),
        plot_validation_curves(validation_curves(runs), out),
    ]
    lines = [
        f"# Results: {root}",
        "",
        f"{len(runs)} run(s). Training metrics from metrics.json (interrupted runs: their last validation); "
        "`eval/...` from each run's eval*.json, each section from the newest file that holds it (recall@1x / @max: "
        "student accuracy averaged over the recall tasks at the training length / the longest length; "
        "recall_items: averaged over the tasks and pair counts).",
        "",
        markdown_table(summary_table(runs)),
        "",
    ]
    seeds = seed_table(runs)
    if seeds is not None:
        lines += ["Over seeds (mean ± half the range):", "", markdown_table(seeds), ""]
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
