"""The report of real sweeps: a `python train.py -m mamba_ratio=0.5,0.875` sweep (the all-Mamba run among them) and
an Optuna search (`hparams_search=optuna`, 2 trials). What the tables and plots show, read off the figures the report
draws (captured as it saves them)."""

from __future__ import annotations

import pandas as pd
import pytest
from omegaconf import OmegaConf

from helpers import train_cli
from hybrid_distill.eval.report import build_report, collect
from hybrid_distill.runtime.identity import swept_settings
from report_figures import capture_figures, labelled_ticks, legend_covers_an_axes, titles


def _sweep(args: list[str], tmp, cache_dir):
    quick = ["logger=csv", "student.calibration_batches=1", "trainer.limit_val_batches=1", "trainer.max_steps=2"]
    proc = train_cli([*quick, *args], tmp, cache_dir, multirun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp / "train" / "multiruns").iterdir()
    return sweep


def _reported(sweep):
    """(sweep dir, the figures its report draws, report.md's text)."""
    mp = pytest.MonkeyPatch()
    drawn = capture_figures(mp)
    text = build_report(sweep).read_text()
    mp.undo()
    return sweep, drawn, text


@pytest.fixture(scope="module")
def ratio_sweep(tiny_teacher, cache_dir, tmp_path_factory):
    """(sweep dir, the report's figures, report.md): 2 steps each, the training loss logged once (at step 2)."""
    sweep = _sweep(["mamba_ratio=0.5,0.875", "trainer.log_every_n_steps=2"], tmp_path_factory.mktemp("m"), cache_dir)
    return _reported(sweep)


@pytest.fixture(scope="module")
def optuna_sweep(tiny_teacher, cache_dir, tmp_path_factory):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="optional extra: pip install -e '.[optuna]'")
    sweep = _sweep(["hparams_search=optuna", "hydra.sweeper.n_trials=2"], tmp_path_factory.mktemp("o"), cache_dir)
    return _reported(sweep)


def _table(text: str) -> pd.DataFrame:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header, *rows = ([c.strip() for c in line.strip("|").split("|")] for line in lines)
    return pd.DataFrame([row for row in rows if len(row) == len(header)], columns=header)


def test_quality_is_plotted_against_the_ratio_the_student_realised(ratio_sweep):
    sweep, drawn, text = ratio_sweep
    runs = collect(sweep)
    assert list(runs["mamba_ratio"]) == [0.5, 0.875] and list(runs["pattern"]) == ["MAMA", "MMMM"]
    assert list(runs["realised_ratio"]) == [0.5, 1.0]  # 0.875 of 4 layers rounds to all Mamba
    assert list(_table(text)["realised_ratio"]) == ["0.5", "1"]
    (name,) = [n for n in drawn if n.startswith("quality")]
    for ax in drawn[name].axes:
        (line,) = [line for line in ax.lines if line.get_label() != "teacher"]
        assert list(line.get_xdata()) == [0.5, 1.0] and "realised" in ax.get_xlabel()


def test_constant_settings_are_one_header_line_not_columns(ratio_sweep):
    _, _, text = ratio_sweep
    table = _table(text)
    assert list(table.columns[:2]) == ["run", "mamba_ratio"]
    assert not {"loss", "backend", "mixer", "stage", "seed"} & set(table.columns)
    (header,) = [line for line in text.splitlines() if line.startswith("Same in every row:")]
    assert "`loss=kl_sft`" in header and "`backend=auto`" in header and "`mixer=mamba2`" in header
    assert "`trainer.log_every_n_steps=2`" in text  # the shared overrides are named too, outside the table


def test_no_title_claims_an_interruption_when_nothing_was_cut(ratio_sweep):
    _, drawn, _ = ratio_sweep
    assert drawn
    for fig in drawn.values():
        assert not [t for t in titles(fig) if "interrupted" in t]


def test_single_logged_points_have_markers(ratio_sweep):
    _, drawn, _ = ratio_sweep
    for ax in drawn["loss_curves"].axes:  # one logged training loss per run: a point needs a marker to show
        points = [line for line in ax.lines if len(line.get_xdata()) == 1]
        assert points and all(line.get_marker() not in (None, "None", "") for line in points)


def test_each_validation_is_one_point(ratio_sweep):
    sweep, drawn, _ = ratio_sweep
    raw = pd.read_csv(sweep / "0" / "distill" / "metrics.csv")
    validations = raw.dropna(subset=["val/kl"])
    # the trainer validates the final weights twice (the fit loop at its last step, then after fit): same values
    assert validations["val/kl"].iloc[-1] == validations["val/kl"].iloc[-2]
    kl_ax = next(ax for ax in drawn["validation_curves"].axes if ax.get_ylabel() == "val/kl")
    line = next(line for line in kl_ax.lines if line.get_label() == "mamba_ratio=0.5")
    assert len(line.get_xdata()) == len(validations) - 1
    assert list(line.get_ydata()) == list(validations["val/kl"].iloc[[*range(len(validations) - 2), -1]])
    assert list(line.get_xdata())[-1] == validations["step"].max()  # at the number of optimizer steps taken


def test_legends_sit_outside_the_curves(ratio_sweep):
    _, drawn, _ = ratio_sweep
    assert {"loss_curves", "validation_curves"} <= set(drawn)
    for name, fig in drawn.items():
        assert not legend_covers_an_axes(fig), name


def test_log_axes_are_labelled_where_the_values_are(ratio_sweep):
    _, drawn, _ = ratio_sweep
    ppl_ax = next(ax for ax in drawn["validation_curves"].axes if ax.get_ylabel() == "val/student_ppl")
    assert ppl_ax.get_yscale() == "log"
    values = [y for line in ppl_ax.lines for y in line.get_ydata()]
    ticks = labelled_ticks(ppl_ax)
    assert max(values) / min(values) < 10 and len(ticks) >= 2  # within one decade, still labelled
    assert min(values) * 0.99 <= min(ticks) and max(ticks) <= max(values) * 1.01
    assert all(float(text) == pytest.approx(loc, rel=1e-3) for loc, text in ticks.items())  # 544.2, not 5.442x10^2


def test_an_optuna_search_shows_its_searched_keys(optuna_sweep):
    sweep, drawn, text = optuna_sweep
    params = list(OmegaConf.load(sweep / "0" / ".hydra" / "hydra.yaml").hydra.sweeper.params)
    trials = sorted(p for p in sweep.iterdir() if p.name.isdigit())
    values = [swept_settings(OmegaConf.load(t / ".hydra" / "overrides.yaml")) for t in trials]
    searched = [k for k in params if len({v[k] for v in values}) > 1]
    assert "stage.lr" in searched  # sampled from a continuous range: differs between trials
    table = _table(text)
    assert list(table.columns[1 : 1 + len(searched)]) == searched  # the searched keys are the first columns
    assert list(table["run"]) == [f"job {t.name}" for t in trials]  # short labels; the values are in the columns
    for key in searched:
        assert [float(x) for x in table[key]] == pytest.approx([float(v[key]) for v in values], rel=1e-3)
    assert not {"mamba_ratio", "loss", "backend", "mixer", "stage", "seed"} & set(table.columns)
    (header,) = [line for line in text.splitlines() if line.startswith("Same in every row:")]
    assert "`mamba_ratio=0.5`" in header
    assert all(f"`{k}=" in header for k in params if k not in searched)
    axes = drawn["quality_vs_settings"].axes
    assert {ax.get_xlabel() for ax in axes} == set(searched)  # quality against what was searched, not mamba_ratio
    lr_axes = [ax for ax in axes if ax.get_xlabel() == "stage.lr"]
    assert all(ax.get_xscale() == "log" for ax in lr_axes)  # searched on a log scale: tag(log, ...)
