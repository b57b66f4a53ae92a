"""The report of a pipeline run, from a real `python train.py experiment=stepwise` (distil 0.5, start 0.75 from that
student, then 0.875): one row per step with its metrics, and the stepwise curve over the steps."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from helpers import compose_eval, train_cli
from hybrid_distill.eval.report import build_report, collect, main, stepwise_curves
from report_figures import capture_figures, labelled_ticks, legend_covers_an_axes

STEPS = ("ratio_0.5", "ratio_0.75", "ratio_0.875")


QUICK = [
    "logger=csv",
    "student.calibration_batches=1",
    "trainer.limit_val_batches=1",
    "model.recipe.distill.max_steps=2",
]


@pytest.fixture(scope="module")
def stepwise(tiny_teacher, cache_dir, tmp_path_factory) -> Path:
    """The run directory of a real stepwise pipeline (three distill steps of 2 optimizer steps each)."""
    tmp = tmp_path_factory.mktemp("stepwise")
    proc = train_cli(["experiment=stepwise", *QUICK], tmp, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp / "train" / "runs").iterdir()
    return run


@pytest.fixture(scope="module")
def direct(stepwise, cache_dir) -> Path:
    """Its baseline, 87.5 % replaced in one go (`experiment=direct_0.875`), run beside it (same runs folder)."""
    tmp = stepwise.parent.parent.parent
    proc = train_cli(["experiment=direct_0.875", *QUICK], tmp, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = set((tmp / "train" / "runs").iterdir()) - {stepwise}
    return run


def test_each_pipeline_step_is_a_row_with_its_metrics(stepwise):
    trained = json.loads((stepwise / "metrics.json").read_text())
    runs = collect(stepwise)
    assert list(runs["run"]) == list(STEPS) and list(runs["step"]) == list(STEPS)
    assert list(runs["mamba_ratio"]) == [0.5, 0.75, 0.875]
    assert list(runs["pattern"]) == ["MAMA", "MMMA", "MMMM"]
    assert list(runs["realised_ratio"]) == [0.5, 0.75, 1.0]  # 0.875 of 4 layers rounds to all Mamba
    assert list(runs["status"]) == ["finished"] * 3
    for _, row in runs.iterrows():
        for metric in ("kl", "student_ppl", "teacher_ppl", "top1_agree", "tokens_seen"):
            assert row[metric] == trained[f"{row['step']}/{metric}"], (row["step"], metric)

    main([str(stepwise)])
    text = (stepwise / "report" / "report.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| ratio_")]
    assert [line.split(" | ")[:2] for line in table] == [
        ["| ratio_0.5", "0.5"],
        ["| ratio_0.75", "0.75"],
        [
            "| ratio_0.875",
            "0.875",
        ],
    ]
    assert "| MMMM | 1 |" in table[2]  # pattern, realised ratio
    assert "`experiment=stepwise`" in text  # a constant: in the header line, not a column
    for name in ("quality_vs_settings", "stepwise_curve", "loss_curves", "validation_curves"):
        assert f"![{name}]({name}.png)" in text


def test_the_stepwise_curve_runs_over_the_steps_one_after_another(stepwise, monkeypatch):
    trained = json.loads((stepwise / "metrics.json").read_text())
    curves = stepwise_curves(collect(stepwise))
    kl = curves[curves["metric"] == "val/kl"]
    assert list(dict.fromkeys(kl["step_id"])) == list(STEPS)
    ends = []
    for sid in STEPS:
        own = kl[kl["step_id"] == sid]
        # each step from its student before training (the converted one) to its final validation, one point each
        assert own["value"].iloc[0] == pytest.approx(trained[f"{sid}/kl_before"])
        assert own["value"].iloc[-1] == pytest.approx(trained[f"{sid}/kl"])
        assert own["step"].is_monotonic_increasing and not own.duplicated(["step", "value"]).any()
        ends.append((own["step"].iloc[0], own["step"].iloc[-1]))
    assert ends[0] == (0, 2)  # 2 optimizer steps per step, counted on from where the step before ended
    assert all(start == end for (_, end), (start, _) in zip(ends, ends[1:]))

    drawn = capture_figures(monkeypatch)
    build_report(stepwise)
    fig = drawn["stepwise_curve"]
    kl_ax, ppl_ax = fig.axes
    (line,) = [line for line in kl_ax.lines if line.get_label() == "stepwise"]
    assert list(line.get_ydata()) == list(kl["value"]) and line.get_marker() == "o"
    assert len(labelled_ticks(ppl_ax)) >= 2  # a perplexity log axis labelled where its values are
    assert not legend_covers_an_axes(fig)


def test_an_evaluated_step_gets_its_evaluation(stepwise, tmp_path):
    """`python eval.py ckpt=<run>/<step>/student` writes into the pipeline's run directory; the report gives the
    numbers to that step's row only."""
    from hybrid_distill.stages.eval import evaluate_from_config

    student = stepwise / "ratio_0.875" / "student"
    overrides = ["logger=none", "suite.quality.batch_size=2", "suite.quality.max_batches=1"]
    off = [f"suite.{s}.enabled=false" for s in ("recall", "throughput", "speculative", "samples")]
    evaluate_from_config(compose_eval(tmp_path, [f"ckpt={student}", *overrides, *off]))
    (results,) = stepwise.glob("eval*.json")
    runs = collect(stepwise).set_index("step")
    evaluated = json.loads(results.read_text())["quality"]["student_ppl"]
    assert runs.loc["ratio_0.875", "eval/quality/student_ppl"] == evaluated
    assert pd.isna(runs.loc["ratio_0.5", "eval/quality/student_ppl"])


def test_stepwise_and_direct_replacement_side_by_side(stepwise, direct, monkeypatch):
    runs = collect(stepwise.parent)  # the folder holding both runs
    chain = [f"experiment=stepwise/{sid}" for sid in STEPS]
    assert list(runs["run"]) == [*chain, "experiment=direct_0.875"]
    assert list(runs["realised_ratio"]) == [0.5, 0.75, 1.0, 1.0]
    curves = stepwise_curves(runs)
    kl = curves[curves["metric"] == "val/kl"]
    baseline = kl[kl["run"] == "experiment=direct_0.875"]
    assert baseline["step_id"].isna().all() and list(baseline["step"])[0] == 0  # at its own steps
    assert baseline["value"].iloc[-1] == pytest.approx(json.loads((direct / "metrics.json").read_text())["kl"])
    assert set(kl["run"]) == {"experiment=stepwise", "experiment=direct_0.875"}

    drawn = capture_figures(monkeypatch)
    build_report(stepwise.parent)
    kl_ax = drawn["stepwise_curve"].axes[0]
    styles = {line.get_label(): line.get_linestyle() for line in kl_ax.lines if line.get_label().startswith("exp")}
    assert styles == {"experiment=stepwise": "-", "experiment=direct_0.875": "--"}
