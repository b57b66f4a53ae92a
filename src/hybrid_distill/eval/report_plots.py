"""The report's plots. Each `figure_*` builds a matplotlib Figure from collect's frame or the curves of
report_data (None when the runs hold no data for it); `plot_*` writes it as a PNG and returns its path.

What every plot does alike (`_finish`): single points get markers (a 10-step run logs one loss value: a line of one
point draws nothing), the legend sits outside the axes (never over the curves), and a log axis is labelled on the
range its values span (a perplexity between 530 and 540 lies between the decade ticks 100 and 1000).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter  # noqa: E402

from .report_data import RATIO_SETTINGS, setting_columns, varying  # noqa: E402
from .report_table import speedup_column, speedup_range  # noqa: E402

QUALITY_METRICS = ("student_ppl", "kl", "top1_agree")
MARKER_POINTS = 40  # lines of at most this many points get markers
RATIO_LABEL = "realised mamba_ratio (Mamba layers / layers)"


def _figure(panels: int, rows: int = 1, width: float = 4.3, height: float = 3.2) -> tuple[Figure, np.ndarray]:
    fig, axes = plt.subplots(
        rows, panels, figsize=(width * panels + 2.2, height * rows), squeeze=False, layout="constrained"
    )
    return fig, axes


def _marker(n: int) -> dict:
    return {"marker": "o", "markersize": 3.5} if n <= MARKER_POINTS else {}


def _data(ax, which: str) -> np.ndarray:
    """The finite positive values drawn in data coordinates on one axis of `ax` (lines, scatter points): not the
    axes-fraction side of a reference line (axhline, axvline)."""
    index = 0 if which == "x" else 1
    values = []
    for line in ax.lines:
        if line.get_transform().contains_branch_seperately(ax.transData)[index]:
            values.append(np.asarray(line.get_xdata() if which == "x" else line.get_ydata(), dtype=float))
    for collection in ax.collections:
        offsets = np.asarray(collection.get_offsets(), dtype=float)
        if offsets.size and collection.get_offset_transform().contains_branch_seperately(ax.transData)[index]:
            values.append(offsets[:, index])
    flat = np.concatenate(values) if values else np.array([])
    return flat[np.isfinite(flat) & (flat > 0)]


def _tick_label(value: float) -> str:
    """`534`, `0.0005872`, `16K` (a token count that is a multiple of 1024: context lengths)."""
    if value >= 1024 and value % 1024 == 0:
        return f"{value / 1024:g}K"
    return f"{value:.4g}"


def readable_log_axis(ax, which: str) -> None:
    """Ticks with labels where the values are, on a log axis: the data values themselves when there are few (context
    lengths, multiples), else 1-2-5 steps of the decades the data spans, else (all within one stretch between two
    such steps) evenly spaced values over the data's range."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    values = _data(ax, which)
    if values.size == 0:
        return
    low, high = float(values.min()), float(values.max())
    distinct = np.unique(values)
    if which == "x" and len(distinct) <= 8:
        ticks = list(distinct)
    else:
        decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        ticks = [m * 10.0**k for k in decades for m in (1, 2, 5) if low <= m * 10.0**k <= high]
        if len(ticks) > 8:
            ticks = [t for t in ticks if f"{t:g}".lstrip("0.").startswith("1")]
        if len(ticks) < 2:
            ticks = [t for t in MaxNLocator(nbins=4).tick_values(low, high) if low <= t <= high and t > 0]
            ticks = ticks if len(ticks) >= 2 else sorted({low, high})
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _: _tick_label(v)))
    axis.set_minor_formatter(NullFormatter())


def _handles(axes) -> dict[str, object]:
    """Legend entries of `axes`, each label once."""
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if not label.startswith("_"):
                handles.setdefault(label, handle)
    return handles


def _step_axis(ax) -> None:
    """Whole steps on the x axis: the logged steps themselves when few (a 2-step run: 0, 2), else integer ticks."""
    steps = np.unique(np.concatenate([np.asarray(line.get_xdata(), dtype=float) for line in ax.lines] or [[]]))
    if 0 < len(steps) <= 8 and np.all(steps == np.round(steps)):
        ax.xaxis.set_major_locator(FixedLocator(steps))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _finish(fig: Figure, title: str | None = None, legend: bool = True) -> Figure:
    """Log axes labelled on their data's range, and (legend=True) one legend for the whole figure, outside the
    axes."""
    for ax in fig.axes:
        for which in ("x", "y"):
            if (ax.get_xscale() if which == "x" else ax.get_yscale()) == "log":
                readable_log_axis(ax, which)
    handles = _handles(fig.axes) if legend else {}
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def save(fig: Figure | None, path: Path) -> Path | None:
    if fig is None:
        return None
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def group_label(columns: list[str], key) -> str:
    """A legend entry for a pandas groupby key: `loss=kl, backend=triton` (pandas gives tuples, even for one column)."""
    values = key if isinstance(key, tuple) else (key,)
    return ", ".join(f"{c}={v}" for c, v in zip(columns, values)) or "all runs"


# ---------------------------------------------------------------- quality vs the swept settings


def quality_axes(runs: pd.DataFrame) -> list[str]:
    """The x axes of the quality plot: every setting that varies between rows (a sweep's swept keys, whatever they
    are; a pipeline's ratios), the ratio as realised by the student's pattern, seeds left to the spread."""
    keys = [c for c in varying(runs, setting_columns(runs)) if c not in ("seed", "step")]
    ratio = [k for k in keys if k in RATIO_SETTINGS]
    if ratio and "realised_ratio" in runs and runs["realised_ratio"].notna().any():
        keys = ["realised_ratio", *(k for k in keys if k not in RATIO_SETTINGS)]
    return keys


def _numeric(values: pd.Series) -> pd.Series | None:
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers if numbers[values.notna()].notna().all() else None


def _quality_panel(ax, runs: pd.DataFrame, key: str, metric: str, others: list[str], log: bool) -> None:
    numbers = _numeric(runs[key])
    if numbers is None:  # a categorical setting (loss=kl, student=mamba1): its values in order of appearance
        categories = list(dict.fromkeys(runs[key].astype(str)))
        x = runs[key].astype(str).map({c: i for i, c in enumerate(categories)}).astype(float)
        ax.set_xticks(range(len(categories)), categories, rotation=20, fontsize=7)
    else:
        x = numbers
    frame = runs.assign(_x=x)[["_x", metric, "status", *others]].dropna(subset=["_x", metric])
    groups = list(frame.groupby(others, dropna=False, sort=False)) if others else [((), frame)]
    joined = any(len(g["_x"].unique()) > 1 for _, g in groups)
    if not joined:  # no two rows differ in this setting alone (a random search): points, no lines
        groups, others = [((), frame)], []
    for key_values, group in groups:
        means = group.groupby("_x")[metric].mean().sort_index()
        label = group_label(others, key_values) if others else "_runs"
        style = {"marker": "o", "markersize": 3.5 if joined else 6, "ls": "-" if joined else "none"}
        line = ax.plot(means.index, means.values, **style, label=label)[0]
        if len(group) > len(means):  # several runs (seeds) at one x: each run as a point, the line through means
            ax.scatter(group["_x"], group[metric], s=10, color=line.get_color(), alpha=0.6)
        cut = group[group["status"] != "finished"]
        if not cut.empty:
            ax.scatter(cut["_x"], cut[metric], facecolors="white", edgecolors=line.get_color(), zorder=3)
    if metric == "student_ppl" and "teacher_ppl" in runs and runs["teacher_ppl"].notna().any():
        ax.axhline(runs["teacher_ppl"].mean(), color="gray", ls="--", label="teacher")
    if log and numbers is not None:
        ax.set_xscale("log")
    ax.set(xlabel=RATIO_LABEL if key == "realised_ratio" else key, ylabel=metric)


def figure_quality(runs: pd.DataFrame) -> Figure | None:
    """Quality (student perplexity, KL, top-1 agreement) against each swept setting, one row of panels per setting;
    lines join the rows that differ only in that setting. Open markers: interrupted runs (said only when any)."""
    metrics = [m for m in QUALITY_METRICS if m in runs and runs[m].notna().any()]
    keys = quality_axes(runs)
    if not metrics or not keys:
        return None
    searched = runs.attrs.get("searched") or {}
    fig, axes = _figure(len(metrics), len(keys))
    for row, key in enumerate(keys):
        others = [k for k in keys if k != key]
        for ax, metric in zip(axes[row], metrics):
            _quality_panel(ax, runs, key, metric, others, log="log" in str(searched.get(key, "")))
        handles = _handles(axes[row])  # each row's lines are the rows of other settings: its own legend, beside it
        if handles:
            axes[row][-1].legend(
                list(handles.values()), list(handles), loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=7
            )
    cut = "status" in runs and (runs["status"] != "finished").any()
    title = "quality vs the swept settings" + (" (open markers: interrupted runs)" if cut else "")
    return _finish(fig, title, legend=False)


def plot_quality(runs: pd.DataFrame, out: Path) -> Path | None:
    return save(figure_quality(runs), out / "quality_vs_settings.png")


# ---------------------------------------------------------------- recall


def figure_recall_vs_length(recall: pd.DataFrame) -> Figure | None:
    if recall.empty or recall["accuracy"].isna().all():
        return None
    tasks = list(dict.fromkeys(recall["task"]))
    fig, axes = _figure(len(tasks), width=3.8)
    for ax, task in zip(axes[0], tasks):
        rows = recall[(recall["task"] == task) & recall["accuracy"].notna()]
        for (run, model), group in rows.groupby(["run", "model"], sort=False):
            if model == "teacher" and run != rows["run"].iloc[0]:
                continue  # the same teacher in every run of a sweep: draw it once
            ax.plot(
                group["multiple"],
                group["accuracy"],
                **_marker(len(group)),
                ls="--" if model == "teacher" else "-",
                label="teacher" if model == "teacher" else run,
            )
        ax.set(xscale="log", xlabel="length / training length", ylabel="accuracy", ylim=(-0.02, 1.02), title=task)
    return _finish(fig)


def figure_recall_vs_items(rows: pd.DataFrame) -> Figure | None:
    """Student accuracy per task as the number of key-value pairs / entries / words grows, one line per run."""
    if rows.empty or rows["accuracy"].isna().all():
        return None
    rows = rows[(rows["model"] == "student") & rows["accuracy"].notna()]
    tasks = list(dict.fromkeys(rows["task"]))
    fig, axes = _figure(len(tasks), width=3.8)
    for ax, task in zip(axes[0], tasks):
        for run, group in rows[rows["task"] == task].groupby("run", sort=False):
            ax.plot(group["items"], group["accuracy"], **_marker(len(group)), label=run)
        ax.set(xscale="log", xlabel="key-value pairs / items", ylabel="accuracy", ylim=(-0.02, 1.02), title=task)
    return _finish(fig)


def plot_recall_vs_length(recall: pd.DataFrame, out: Path) -> Path | None:
    return save(figure_recall_vs_length(recall), out / "recall_vs_length.png")


def plot_recall_vs_items(rows: pd.DataFrame, out: Path) -> Path | None:
    return save(figure_recall_vs_items(rows), out / "recall_vs_items.png")


# ---------------------------------------------------------------- throughput


def _spread(group: pd.DataFrame, low: str, high: str, value: str) -> np.ndarray | None:
    """Error-bar lengths (below, above) from per-row min and max columns, None when the rows have none."""
    if low not in group or group[low].isna().all():
        return None
    return np.vstack([group[value] - group[low], group[high] - group[value]]).astype(float)


def figure_throughput(throughput: pd.DataFrame) -> Figure | None:
    """Decode tokens/s vs context per (run, model, batch), and the decode speedup over the first model (the teacher):
    medians over repeats with their measured range as error bars (rows of one measurement have none)."""
    if throughput.empty or "decode_tok_s" not in throughput:
        return None
    rows = throughput[throughput["decode_tok_s"].notna()]
    speedup = speedup_column(rows)
    fig, axes = _figure(2 if speedup else 1, width=4.8, height=3.6)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    settings = list(dict.fromkeys(zip(rows["run"], rows["batch"])))
    color = {setting: cycle[i % len(cycle)] for i, setting in enumerate(settings)}  # one per run and batch
    ax = axes[0][0]
    for (run, model, batch), group in rows.groupby(["run", "model", "batch"], sort=False):
        group = group.sort_values("prompt_len")
        ax.errorbar(
            group["prompt_len"],
            group["decode_tok_s"],
            yerr=_spread(group, "decode_tok_s_min", "decode_tok_s_max", "decode_tok_s"),
            capsize=3,
            **_marker(len(group)),
            color=color[(run, batch)],
            ls="--" if model == "teacher" else "-",
            label=f"{run}: {model}, batch {batch}",
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="prompt length (tokens)",
        ylabel="decode tokens/s",
        title="decode tokens/s",
    )
    if speedup:
        ax = axes[0][1]
        measured = rows[rows[speedup].notna()]
        for (run, batch), group in measured.groupby(["run", "batch"], sort=False):
            group = group.sort_values("prompt_len")
            ranges = [speedup_range(row, speedup) for _, row in group.iterrows()]
            low = np.array([r[0] if r[0] is not None else np.nan for r in ranges], dtype=float)
            high = np.array([r[1] if r[1] is not None else np.nan for r in ranges], dtype=float)
            median = group[speedup].to_numpy(dtype=float)
            bars = None if np.isnan(low).all() else np.vstack([median - low, high - median])
            ax.errorbar(
                group["prompt_len"],
                median,
                yerr=bars,
                capsize=3,
                **_marker(len(group)),
                color=color[(run, batch)],
                ls=":",
                label=f"{run}: speedup, batch {batch}" + ("" if bars is not None else " (1 measurement)"),
            )
        ax.axhline(1.0, color="gray", ls=":", lw=1)
        base = speedup.removeprefix("decode_speedup_vs_")
        ax.set(
            xscale="log",
            xlabel="prompt length (tokens)",
            ylabel=f"decode tokens/s / {base}'s",
            title=f"decode speedup vs {base}",
        )
    return _finish(fig, "generation throughput vs context: medians over repeats, bars from min to max")


def plot_throughput(throughput: pd.DataFrame, out: Path) -> Path | None:
    return save(figure_throughput(throughput), out / "throughput_vs_context.png")


# ---------------------------------------------------------------- curves


def figure_panels(curves: pd.DataFrame, panel: str, xlabel: str = "step") -> Figure | None:
    """One axis per (stage, value of column `panel`), one line per run (markers where points are few); perplexities
    on a log scale."""
    if curves.empty:
        return None
    panels = list(dict.fromkeys(zip(curves["stage"], curves[panel])))
    fig, axes = _figure(len(panels))
    for ax, (stage, name) in zip(axes[0], panels):
        rows = curves[(curves["stage"] == stage) & (curves[panel] == name)]
        for run, group in rows.groupby("run", sort=False):
            ax.plot(group["step"], group["value"], **_marker(len(group)), label=run)
        ax.set(xlabel=xlabel, ylabel=name, title=f"{stage}: {name}", yscale="log" if "ppl" in name else "linear")
        _step_axis(ax)
    return _finish(fig)


def plot_loss_curves(curves: pd.DataFrame, out: Path) -> Path | None:
    return save(figure_panels(curves, "objective"), out / "loss_curves.png")


def plot_validation_curves(curves: pd.DataFrame, out: Path) -> Path | None:
    return save(figure_panels(curves, "metric"), out / "validation_curves.png")


def figure_stepwise(curves: pd.DataFrame) -> Figure | None:
    """Validation KL and perplexity over a pipeline's steps one after another (stepwise_curves): one curve per
    pipeline, a dotted line where each step starts, named by its id and the student's realised ratio; plain runs
    under the same root (e.g. a direct replacement) dashed, at their own steps."""
    if curves.empty:
        return None
    metrics = [m for m in ("val/kl", "val/student_ppl") if m in set(curves["metric"])]
    fig, axes = _figure(len(metrics), width=5.2, height=3.6)
    chains = curves[curves["step_id"].notna()]
    for ax, metric in zip(axes[0], metrics):
        for run, group in curves[curves["metric"] == metric].groupby("run", sort=False):
            chain = group["step_id"].notna().all()
            ax.plot(group["step"], group["value"], **_marker(len(group)), ls="-" if chain else "--", label=run)
        first = chains[chains["metric"] == metric].groupby(["run", "step_id"], sort=False).first()
        for (_, step_id), start in first.iterrows():
            ax.axvline(start["step"], color="gray", ls=":", lw=0.8)
            ratio = start["realised_ratio"]
            text = f"{step_id}" + ("" if pd.isna(ratio) else f"\n{start['pattern']} ({ratio:.3g})")
            ax.annotate(
                text,
                (start["step"], 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -2),
                textcoords="offset points",
                va="top",
                fontsize=6,
                color="dimgray",
            )
        ax.set(
            xlabel="optimizer steps, cumulative over the pipeline's steps",
            ylabel=metric,
            yscale="log" if "ppl" in metric else "linear",
        )
        _step_axis(ax)
    return _finish(fig, "stepwise: validation over the pipeline's steps")


def plot_stepwise(curves: pd.DataFrame, out: Path) -> Path | None:
    return save(figure_stepwise(curves), out / "stepwise_curve.png")
