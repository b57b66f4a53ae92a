"""What the report reads: the rows (a run, or one step of a pipeline run), their settings and metrics, and the logged
curves. The one reader of a stage's metrics.csv is `stage_logs`; everything else reads through it.

A row is a run directory with a metrics.json (what `python train.py` writes when it finishes), or one that was cut
short (a <stage>/metrics.csv but no metrics.json: its last validation fills the row, its status says where it
stopped). A pipeline run (`stage=pipeline`, e.g. `experiment=stepwise`) gives one row per step (<run>/<step id>/),
with the step's metrics from the run's pipeline_state.json (or, for the step that was cut, from its metrics.csv) and
its settings from the run's config plus the step's overrides. The settings of a row are the named `SETTINGS` read
from its config and every command-line override of its run and step (a sweep's swept keys, whatever they are); the
report shows those that vary between rows as columns and the others in one header line.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd
import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..errors import UserError
from ..runtime.identity import swept_settings
from .results import results_files

# named settings read from each row's config: column -> config key
SETTINGS = {
    "arch": "stage.arch",  # runs trained from scratch (stage=scratch)
    "mamba_ratio": "mamba_ratio",
    "loss": "loss.name",
    "backend": "scan_backend",
    "mixer": "student.mixer",
    "stage": "stage.name",
    "seed": "seed",
}
COLUMN_OF_KEY = {key: column for column, key in SETTINGS.items()}  # an override of scan_backend is column backend
# settings whose value the realised ratio (the student's pattern) shows better than the requested one
RATIO_SETTINGS = ("mamba_ratio", "student.pattern")
PIPELINE_STATE = "pipeline_state.json"  # stages/pipeline.py's STATE_FILE (not imported: that pulls in the trainer)
# validation metrics in a stage's metrics.csv -> their name in metrics.json
VALIDATION_METRICS = {
    "val/student_ppl": "student_ppl",
    "val/teacher_ppl": "teacher_ppl",
    "val/kl": "kl",
    "val/top1_agree": "top1_agree",
}
LONG_LABEL = 40  # a run label (its swept overrides) longer than this is replaced by its folder: the table has them


# ---------------------------------------------------------------- the one reader of the logged metrics


def _read_csv(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    return frame.drop(columns=[c for c in frame if c.startswith("Unnamed")])


def drop_repeated_validations(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` without a validation row that repeats the one before it value for value: the same weights validated
    twice (the fit loop's validation at its last step, then the validation after fit, logged at the next step).
    The later row stays: it is logged at the number of optimizer steps taken, as the validation before fit is (0)."""
    columns = [c for c in VALIDATION_METRICS if c in frame]
    if not columns:
        return frame
    validated = frame[frame[columns].notna().any(axis=1)].sort_values("step", kind="stable")
    values = validated[columns].fillna(-math.inf)
    repeated = (values == values.shift(-1)).all(axis=1)  # equal to the next validation: drop this one, keep that
    return frame.drop(index=validated.index[repeated])


def stage_logs(directory: Path) -> Iterator[tuple[str, pd.DataFrame]]:
    """(stage, its metrics.csv as a frame, repeated validations dropped) for every logged stage of a row."""
    for csv in sorted(Path(directory).glob("*/metrics.csv")):
        yield csv.parent.name, drop_repeated_validations(_read_csv(csv))


def interrupted_metrics(row_dir: Path) -> dict:
    """What an interrupted run (or pipeline step) logged: its last validation (named as metrics.json names them), the
    tokens it saw, its pattern, and `status` saying where it stopped."""
    frame = pd.concat([frame for _, frame in stage_logs(row_dir)], ignore_index=True)
    record = {"status": f"interrupted at step {int(frame['step'].max())}"}
    validated = frame.dropna(subset=[c for c in VALIDATION_METRICS if c in frame])
    if not validated.empty:
        last = validated.loc[validated["step"].idxmax()]
        record.update({name: float(last[col]) for col, name in VALIDATION_METRICS.items() if col in last})
        record["status"] += f" (last validation at step {int(last['step'])})"
    if "train/tokens_seen" in frame and frame["train/tokens_seen"].notna().any():
        record["tokens_seen"] = int(frame["train/tokens_seen"].max())
    hparams = next(iter(sorted(row_dir.glob("*/hparams.yaml"))), None)
    if hparams is not None and "pattern" in (saved := OmegaConf.load(hparams)):
        record["pattern"] = str(saved.pattern)
    return record


def trained_steps(frame: pd.DataFrame) -> int:
    """Optimizer steps a stage's log covers: the step of its last validation (logged at the number of steps taken)
    or one past its last logged training step. Rows of other counters (validate/*) carry their own `step`."""
    val = [c for c in frame if c.startswith("val/")]
    train = [c for c in frame if c.startswith(("train/", "lr-"))]
    last_val = frame.loc[frame[val].notna().any(axis=1), "step"].max() if val else math.nan
    last_train = frame.loc[frame[train].notna().any(axis=1), "step"].max() + 1 if train else math.nan
    steps = [s for s in (last_val, last_train) if not pd.isna(s)]
    return int(max(steps)) if steps else 0


# ---------------------------------------------------------------- runs, pipeline steps and their settings


def _config_dir(directory: Path) -> bool:
    return (directory / ".hydra" / "config.yaml").is_file()


def _run_of(logged: Path, root: Path) -> Path:
    """The run a logged directory belongs to: the nearest folder at or above it (within root) with a saved config
    (a pipeline's step folders have none of their own), else the folder itself."""
    for directory in [logged, *logged.parents]:
        if _config_dir(directory):
            return directory
        if directory == root:
            break
    return logged


def find_runs(root: Path) -> list[Path]:
    """Run directories at or under `root`, sorted (multirun job numbers numerically): finished runs (a metrics.json),
    pipeline runs (a pipeline_state.json, finished or not) and interrupted ones (a <stage>/metrics.csv but no
    metrics.json - a cut GPU job or a preempted one still shows how far it got)."""
    if not root.is_dir():
        raise UserError(f"report: '{root}' is not a directory")

    def found(pattern: str) -> set[Path]:
        return {p for p in root.rglob(pattern) if "wandb" not in p.parts}

    candidates = {p.parent for p in found("metrics.json") | found(PIPELINE_STATE)}
    candidates |= {_run_of(p.parent.parent, root) for p in found("*/metrics.csv")}
    runs = {run for run in candidates if not candidates.intersection(run.parents)}  # a run's steps are not runs
    if not runs:
        raise UserError(f"report: no runs under '{root}' (no metrics.json or <stage>/metrics.csv found)")
    return sorted(
        runs, key=lambda p: [int(s) if s.isdigit() else math.inf for s in p.relative_to(root).parts] + [str(p)]
    )


def run_config(run: Path) -> DictConfig:
    path = run / ".hydra" / "config.yaml"
    cfg = OmegaConf.load(path) if path.is_file() else OmegaConf.create()
    if isinstance(cfg.get("scan_backend"), DictConfig):  # runs made while scan_backend was a group {name: ...}
        cfg.scan_backend = cfg.scan_backend.name
    return cfg


def run_overrides(run: Path) -> list[str]:
    path = run / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.is_file() else []


def searched_params(run: Path) -> dict[str, str]:
    """The sweeper's search space (`hydra.sweeper.params` of the run's saved hydra.yaml; Optuna's, e.g.
    `stage.lr: tag(log, interval(3e-4, 1e-2))`), empty for a run outside such a sweep."""
    path = run / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return {}
    params = OmegaConf.select(OmegaConf.load(path), "hydra.sweeper.params", default=None)
    return {str(k): str(v) for k, v in params.items()} if isinstance(params, DictConfig) else {}


def _format_value(raw: str) -> str:
    """An override's value as a label shows it: floats to 4 significant digits (Optuna writes 17)."""
    try:
        number = float(raw)
    except ValueError:
        return raw
    return raw if re.fullmatch(r"[-+]?\d+", raw) else f"{number:.4g}"


def labels(runs: list[Path], root: Path) -> list[str]:
    """Each run's command-line overrides that differ between the runs (a sweep's swept values), else (or when that
    is longer than LONG_LABEL) its folder."""
    overrides = [run_overrides(run) for run in runs]
    common = set.intersection(*(set(o) for o in overrides)) if len(runs) > 1 else set()
    out = []
    for run, own in zip(runs, overrides):
        folder = str(run.relative_to(root)) if run != root else run.name
        swept = ",".join(
            f"{k}={_format_value(v)}" for o in own if o not in common for k, v in swept_settings([o]).items()
        )
        out.append(swept if swept and len(swept) <= LONG_LABEL else (f"job {folder}" if folder.isdigit() else folder))
    return out


def _scalar(value) -> bool:
    return value is None or isinstance(value, (int, float, str, bool))


def row_settings(cfg: DictConfig, overrides: list[str]) -> dict:
    """The named SETTINGS from the config, and every override `key=value` as column `key` (the SETTINGS column of
    its config key, e.g. scan_backend -> backend), valued as the config holds it (typed) or, for a config group
    (loss=kl) or a key the config lacks, as written."""
    settings = {column: OmegaConf.select(cfg, key, default=None) for column, key in SETTINGS.items()}
    for key, raw in swept_settings(overrides).items():
        column = COLUMN_OF_KEY.get(key, key)
        if column in SETTINGS and settings[column] is not None:
            continue
        value = OmegaConf.select(cfg, key, default=None)
        settings[column] = value if _scalar(value) and value is not None else raw
    return settings


def _with_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """`cfg` with a pipeline step's plain `key=value` overrides applied where the key holds a value (a group choice
    like data=chat is kept as a setting only, by row_settings)."""
    cfg = cfg.copy()
    for key, raw in swept_settings(overrides).items():
        current = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        if current is not None and not isinstance(current, (DictConfig, ListConfig)):
            OmegaConf.update(cfg, key, yaml.safe_load(raw))
    return cfg


def _metrics_record(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and not k.endswith("_dir")}


def pipeline_steps(run: Path, cfg: DictConfig) -> list[dict] | None:
    """The steps of a pipeline run as [{id, stage, overrides, metrics}] (metrics None: not started), or None for a
    run of another stage. Finished steps' metrics from pipeline_state.json; a step that was cut, from its logs."""
    steps = OmegaConf.select(cfg, "stage.steps", default=None)
    if OmegaConf.select(cfg, "stage.name", default=None) != "pipeline" or steps is None:
        return None
    state = run / PIPELINE_STATE
    done = json.loads(state.read_text())["done"] if state.is_file() else {}
    out = []
    for step in steps:
        sid = str(step["id"])
        if sid in done:
            metrics = {"status": "finished", **{k: v for k, v in done[sid].items() if not k.startswith("_")}}
        elif any((run / sid).glob("*/metrics.csv")):
            metrics = interrupted_metrics(run / sid)
        else:
            metrics = None
        out.append(
            {"id": sid, "stage": str(step["stage"]), "overrides": list(step.get("overrides") or []), "metrics": metrics}
        )
    return out


def realised_ratio(pattern) -> float | None:
    """Mamba layers / layers of the student's pattern (`MMMA` -> 0.75): the ratio the depth allowed, which may differ
    from the requested mamba_ratio (0.875 of 4 layers rounds to MMMM)."""
    if not isinstance(pattern, str) or not pattern or set(pattern) - {"A", "M"}:
        return None
    return pattern.count("M") / len(pattern)


def latest_eval(directory: Path, ckpt_under: Path | None = None) -> dict | None:
    """A directory's evaluations merged, each section from the newest eval*.json that holds it: a run evaluated in
    two passes (recall in parallel with other runs, then throughput alone on the GPU) keeps both; the summary's keys
    likewise, newest first. ckpt_under: only evaluations of a checkpoint under that folder (a pipeline's steps)."""
    merged: dict = {}
    for path in results_files(directory):
        results = json.loads(path.read_text())
        if ckpt_under is not None and not Path(str(results.get("ckpt"))).resolve().is_relative_to(ckpt_under.resolve()):
            continue
        for key, value in results.items():
            if key == "summary":
                merged.setdefault("summary", {}).update(value)
            elif value not in (None, [], {}):
                merged[key] = value
    return merged or None


def _recall_means(rows: list[dict]) -> dict[float, float]:
    """Student accuracy per length multiple, averaged over tasks (tasks skipped at a length left out)."""
    frame = pd.DataFrame([r for r in rows if r["model"] == "student" and r.get("accuracy") is not None])
    return {} if frame.empty else frame.groupby("multiple")["accuracy"].mean().to_dict()


def _evaluation_record(evaluation: dict | None) -> dict:
    if not evaluation:
        return {}
    record = {f"eval/{k}": v for k, v in (evaluation.get("summary") or {}).items()}
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
    return record


def _rows_of_run(run: Path, label: str, single: bool) -> tuple[list[dict], list[str]]:
    """The run's rows (one per pipeline step that ran, else one) and the setting columns they hold."""
    cfg, overrides = run_config(run), run_overrides(run)
    steps = pipeline_steps(run, cfg)
    if steps is None:
        metrics = (
            {"status": "finished", **json.loads((run / "metrics.json").read_text())}
            if (run / "metrics.json").is_file()
            else interrupted_metrics(run)
        )
        rows = [(label, run, row_settings(cfg, overrides), metrics, latest_eval(run))]
    else:  # the steps that ran; an eval step's numbers are in the evaluated step's row (its eval*.json)
        rows = []
        for step in steps:
            if step["metrics"] is None or step["stage"] == "eval":
                continue
            settings = row_settings(_with_overrides(cfg, step["overrides"]), [*overrides, *step["overrides"]])
            settings.update(stage=step["stage"], step=step["id"])
            evaluation = latest_eval(run / step["id"]) or latest_eval(run, ckpt_under=run / step["id"])
            step_label = step["id"] if single else f"{label}/{step['id']}"
            rows.append((step_label, run / step["id"], settings, step["metrics"], evaluation))
    # the name of a pipeline's curve: its experiment when it is the only run, else its label
    chain = (str(cfg.get("experiment_name") or label) if single else label) if steps is not None else None
    records, columns = [], []
    for row_label, directory, settings, metrics, evaluation in rows:
        record = {"run": row_label, "dir": str(directory), "run_dir": str(run), "chain": chain, **settings}
        columns += settings
        record.update(_metrics_record(metrics))
        record["realised_ratio"] = realised_ratio(record.get("pattern"))
        record.update(_evaluation_record(evaluation))
        if record.get("mamba_ratio") is None and evaluation:  # a student directory evaluated outside a run
            record["mamba_ratio"] = evaluation.get("mamba_ratio")
        records.append(record)
    return records, columns


def collect(root: Path) -> pd.DataFrame:
    """One row per run (per step of a pipeline run): label, settings, training metrics, realised ratio, and the
    newest evaluation's summary (`eval/...`). `frame.attrs`: `settings` (the setting columns: the sweeper's searched
    keys first, then the pipeline step, the named SETTINGS and the other overrides), `searched` (the sweeper's
    search space: column -> its definition, e.g. `tag(log, interval(3e-4, 1e-2))`)."""
    runs = find_runs(root)
    records, columns, searched = [], [], {}
    for run, label in zip(runs, labels(runs, root)):
        rows, own = _rows_of_run(run, label, single=len(runs) == 1)
        records += rows
        columns += own
        searched.update({COLUMN_OF_KEY.get(k, k): v for k, v in searched_params(run).items()})
    frame = pd.DataFrame(records)
    order = dict.fromkeys([*searched, "step", *SETTINGS, *columns])
    frame.attrs["settings"] = [c for c in order if c in frame]
    frame.attrs["searched"] = searched
    return frame


def setting_columns(runs: pd.DataFrame) -> list[str]:
    """The setting columns of collect's frame (its attrs), else the named SETTINGS it holds."""
    return list(runs.attrs.get("settings") or [c for c in SETTINGS if c in runs])


def varying(runs: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """Those of `columns` whose values differ between the rows."""
    return [c for c in columns if c in runs and runs[c].astype(str).nunique(dropna=False) > 1]


def eval_rows(runs: pd.DataFrame, section: str) -> pd.DataFrame:
    """The list section (`recall`, `recall_items` or `throughput`) of every row's newest evaluation, with its label."""
    frames = []
    for label, directory, run_dir in zip(runs["run"], runs["dir"], runs.get("run_dir", runs["dir"])):
        directory, run_dir = Path(directory), Path(run_dir)
        evaluation = latest_eval(directory) or (
            latest_eval(run_dir, ckpt_under=directory) if run_dir != directory else None
        )
        if evaluation and evaluation.get(section):
            frames.append(pd.DataFrame(evaluation[section]).assign(run=label))
    return concat(frames)


def read_throughput_files(paths: Iterable[Path]) -> pd.DataFrame:
    """rows.jsonl files of experiments/throughput/bench.py, labelled by their folder."""
    return concat([pd.read_json(p, lines=True).assign(run=p.parent.name) for p in paths])


def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ---------------------------------------------------------------- curves


def _row_logs(runs: pd.DataFrame):
    """(row label, its loss config, stage, the stage's log) for every logged stage of every row."""
    losses = runs["loss"] if "loss" in runs else [None] * len(runs)
    for label, directory, loss in zip(runs["run"], runs["dir"], losses):
        for stage, frame in stage_logs(Path(directory)):
            yield label, loss, stage, frame


def _curve(label: str, stage: str, frame: pd.DataFrame, metric: str, **columns) -> pd.DataFrame:
    """One metric's logged values per step: columns run, stage, step, metric, `columns`, value."""
    rows = frame[["step", metric]].dropna()
    return pd.DataFrame(
        {"run": label, "stage": stage, "step": rows["step"], "metric": metric, **columns, "value": rows[metric]}
    )


def loss_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Every row's logged training loss per step: columns run, stage, step, metric, objective, value. `objective`
    names what the value measures: train/loss is a different mix for every `loss` config, so it carries the loss."""
    frames = []
    for label, loss, stage, frame in _row_logs(runs):
        metric = next((c for c in ("train/loss", "train/ce", "train/divergence") if c in frame), None)
        if metric is None or frame[metric].isna().all():
            continue
        objective = f"{metric} ({loss})" if metric == "train/loss" and loss else metric
        frames.append(_curve(label, stage, frame, metric, objective=objective))
    return concat(frames)


def loss_panels(curves: pd.DataFrame) -> list[tuple[str, str]]:
    """(stage, objective) of each loss-curve panel: one objective per axis, never two losses on one scale."""
    return list(dict.fromkeys(zip(curves["stage"], curves["objective"])))


STEPWISE_METRICS = ("val/kl", "val/student_ppl")


def _validation(label: str, stage: str, frame: pd.DataFrame, **columns) -> list[pd.DataFrame]:
    """The validation curves (KL, perplexity) of one stage's log, one point per validation."""
    return [
        _curve(label, stage, frame, metric, **columns)
        for metric in STEPWISE_METRICS
        if metric in frame and frame[metric].notna().any()
    ]


def validation_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Every row's validation metrics per step (columns run, stage, step, metric, value), one point per validation:
    the quality measure of a distillation (KL to the teacher, perplexity) as training goes, comparable across loss
    mixes, unlike train/loss."""
    return concat([curve for label, _, stage, frame in _row_logs(runs) for curve in _validation(label, stage, frame)])


def stepwise_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Validation KL and perplexity of each pipeline run over its steps one after another (columns run, stage, step,
    metric, value, step_id, realised_ratio, pattern): `step` counts optimizer steps from the pipeline's first
    training step, so a stepwise chain (0.5 -> 0.75 -> 0.875) is one curve, with a jump where layers were converted.
    Rows of plain runs under the same root (e.g. experiment=direct_0.875) are added at their own steps (step_id
    None), for comparison. Empty when no pipeline has two or more logged steps."""
    if "step" not in runs:
        return pd.DataFrame()
    frames, chains = [], 0
    for _, steps in runs[runs["step"].notna()].groupby("run_dir", sort=False):
        offset, logged = 0, 0
        for _, row in steps.iterrows():
            about = {"step_id": row["step"], "realised_ratio": row.get("realised_ratio"), "pattern": row.get("pattern")}
            for stage, frame in stage_logs(Path(row["dir"])):
                shifted = frame.assign(step=frame["step"] + offset)
                frames += _validation(str(row["chain"]), stage, shifted, **about)
                logged += 1
                offset += trained_steps(frame)
        chains += logged >= 2
    if not chains:
        return pd.DataFrame()
    for _, row in runs[runs["step"].isna()].iterrows():
        about = {"step_id": None, "realised_ratio": row.get("realised_ratio"), "pattern": row.get("pattern")}
        frames += [
            curve
            for stage, frame in stage_logs(Path(row["dir"]))
            for curve in _validation(row["run"], stage, frame, **about)
        ]
    return concat(frames)
