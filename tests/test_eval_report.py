"""The sweep report (python -m hybrid_distill.report) and notebooks/results.ipynb on a tiny two-run sweep."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
from omegaconf import OmegaConf

from helpers import REPO, compose_config, compose_eval, save_run_config
from hybrid_distill import cli
from hybrid_distill.stages.eval import evaluate_from_config
from hybrid_distill.eval.report import collect, main
from report_figures import capture_figures, labelled_ticks, titles

# the notebook extra (.[eval]): the GPU image does not stage it, and `pytest -m gpu` must still collect there
nbformat = pytest.importorskip("nbformat", reason="optional extra: pip install -e '.[eval]'")
NotebookClient = pytest.importorskip("nbclient", reason="optional extra: pip install -e '.[eval]'").NotebookClient

RATIOS = (0.5, 0.75)
EVAL = [
    "logger=none",
    "suite.quality.batch_size=4",
    "suite.quality.max_batches=2",
    "suite.recall.multiples=[1,2]",
    "suite.recall.num_examples=2",
    "suite.recall.tasks=[mqar,copy]",
    "suite.throughput.prompt_lens=[16,32]",  # a tiny decode benchmark: 3 repeats each, medians and range
    "suite.throughput.batches=[1]",
    "suite.throughput.new_tokens=4",
    "suite.throughput.warmup=1",
    "suite.speculative.enabled=false",
    "suite.samples.enabled=false",  # not reported; its HF generate needs a config transformers can build bare
]
# the throughput plot is fed from the committed H100 measurements (experiments/throughput/bench.py output)
H100_ROWS = REPO / "experiments" / "throughput" / "results" / "h100-2" / "rows.jsonl"


@pytest.fixture(scope="module")
def sweep(tiny_teacher, tmp_path_factory) -> Path:
    """Two distill runs laid out like a multirun (<sweep>/<job num>/), each trained and then evaluated."""
    root = tmp_path_factory.mktemp("sweep")
    for num, ratio in enumerate(RATIOS):
        run_dir = root / str(num)
        overrides = [f"mamba_ratio={ratio}"]
        cfg = compose_config(run_dir, ["logger=csv", *overrides])
        save_run_config(cfg, run_dir)
        OmegaConf.save(OmegaConf.create(overrides), run_dir / ".hydra" / "overrides.yaml")
        cli.run(cfg)
        evaluate_from_config(compose_eval(run_dir / "eval_out", [f"ckpt={run_dir}", *EVAL]))
    return root


def test_report_table_and_plots(sweep):
    runs = collect(sweep)
    assert list(runs["run"]) == [f"mamba_ratio={r}" for r in RATIOS]
    assert list(runs["mamba_ratio"]) == list(RATIOS) and list(runs["pattern"]) == ["MAMA", "MMMA"]
    for _, row in runs.iterrows():
        trained = json.loads((Path(row["dir"]) / "metrics.json").read_text())
        assert row["student_ppl"] == trained["student_ppl"]
        evaluated = json.loads((Path(row["dir"]) / "eval.json").read_text())
        assert row["eval/quality/student_ppl"] == evaluated["quality"]["student_ppl"]

    out = sweep / "custom_report"
    proc = subprocess.run(
        [sys.executable, "-m", "hybrid_distill.report", str(sweep), "--out", str(out), "--throughput", str(H100_ROWS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (out / "report.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| mamba_ratio=") and "| finished |" in line]
    assert len(table) == 2 and "| MAMA |" in table[0] and "| MMMA |" in table[1]
    for name in (
        "quality_vs_settings",
        "recall_vs_length",
        "throughput_vs_context",
        "loss_curves",
        "validation_curves",
    ):
        assert f"![{name}]({name}.png)" in text
        image = matplotlib.image.imread(out / f"{name}.png")
        assert image.shape[0] > 100 and image.std() > 0  # a real, non-blank picture


def test_an_interrupted_run_is_reported_with_its_last_validation_and_where_it_stopped(tmp_path, monkeypatch):
    import pandas as pd

    root = tmp_path / "cut_sweep"
    for name, ratio in (("0", 0.5), ("1", 0.75)):  # job 0 finished, job 1 was cut at step 7
        (root / name / ".hydra").mkdir(parents=True)
        OmegaConf.save(OmegaConf.create({"mamba_ratio": ratio}), root / name / ".hydra" / "config.yaml")
        OmegaConf.save(OmegaConf.create([f"mamba_ratio={ratio}"]), root / name / ".hydra" / "overrides.yaml")
    (root / "0" / "metrics.json").write_text(json.dumps({"pattern": "MAMA", "student_ppl": 80.0, "kl": 0.5}))
    (root / "1" / "distill").mkdir()
    OmegaConf.save(OmegaConf.create({"pattern": "MMMA"}), root / "1" / "distill" / "hparams.yaml")
    nan = float("nan")
    pd.DataFrame(  # what Lightning's CSVLogger writes: validation rows and training rows interleaved
        {
            "step": [0, 3, 4, 5, 6, 7],
            "train/loss": [nan, 2.0, 1.9, nan, 1.7, 1.6],
            "train/tokens_seen": [nan, 512, 640, nan, 896, 1024],
            "val/kl": [1.5, nan, nan, 0.9, nan, nan],
            "val/student_ppl": [300.0, nan, nan, 120.0, nan, nan],
            "val/teacher_ppl": [100.0, nan, nan, 100.0, nan, nan],
            "val/top1_agree": [0.2, nan, nan, 0.4, nan, nan],
        }
    ).to_csv(root / "1" / "distill" / "metrics.csv", index=False)

    runs = collect(root)
    assert list(runs["run"]) == ["mamba_ratio=0.5", "mamba_ratio=0.75"]
    assert list(runs["status"]) == ["finished", "interrupted at step 7 (last validation at step 5)"]
    cut = runs.iloc[1]
    assert (cut["kl"], cut["student_ppl"], cut["teacher_ppl"], cut["top1_agree"]) == (0.9, 120.0, 100.0, 0.4)
    assert (cut["tokens_seen"], cut["pattern"], cut["mamba_ratio"]) == (1024, "MMMA", 0.75)
    drawn = capture_figures(monkeypatch)
    main([str(root)])
    text = (root / "report" / "report.md").read_text()
    row = "| mamba_ratio=0.75 | 0.75 | interrupted at step 7 (last validation at step 5) | MMMA | 0.75 | 1024 | 120 |"
    assert row in text
    assert "![validation_curves](validation_curves.png)" in text
    assert any("open markers: interrupted" in title for title in titles(drawn["quality_vs_settings"]))


def test_throughput_medians_are_shown_with_their_measured_range(sweep, monkeypatch, capsys):
    """A median speedup alone hides its spread (1.094 measured anywhere from 0.57 to 1.38): the plot draws the
    range as error bars, report.md and the console print it, and the evaluation's summary holds it."""
    from hybrid_distill.eval.results import summary_metrics

    drawn = capture_figures(monkeypatch)
    main([str(sweep), "--out", str(sweep / "range_report")])
    printed = capsys.readouterr().out
    speedup_ax = next(ax for ax in drawn["throughput_vs_context"].axes if "speedup" in ax.get_title())
    for num, ratio in enumerate(RATIOS):
        evaluated = json.loads((sweep / str(num) / "eval.json").read_text())
        student = [r for r in evaluated["throughput"] if r["model"] == "student"]
        assert [r["prompt_len"] for r in student] == [16, 32] and all(r["repeats"] == 3 for r in student)
        for r in student:
            low, high = r["decode_speedup_range_vs_teacher"]
            printed_row = f"| {r['decode_speedup_vs_teacher']:.4g} [{low:.3g}, {high:.3g}] |"
            assert printed_row in printed  # report.md, as main prints it
            key = f"throughput/decode_speedup_vs_teacher/L{r['prompt_len']}/B1"
            assert (evaluated["summary"][f"{key}/min"], evaluated["summary"][f"{key}/max"]) == (low, high)
            assert summary_metrics(evaluated)[f"{key}/max"] == high  # what eval.py's summary table prints
        bars = next(c for c in speedup_ax.containers if c.get_label() == f"mamba_ratio={ratio}: speedup, batch 1")
        ends = [tuple(segment[:, 1]) for segment in bars.lines[2][0].get_segments()]
        expected = [tuple(r["decode_speedup_range_vs_teacher"]) for r in student]
        assert [pytest.approx(e) for e in expected] == ends


def test_log_axes_are_ticked_at_the_measured_settings(sweep, monkeypatch):
    """Context lengths and length multiples are few settings on a log axis: ticks at exactly those values, labelled
    (16, 32; 1K, 4K, 16K, 32K), not at decades where no value is."""
    drawn = capture_figures(monkeypatch)
    main([str(sweep), "--out", str(sweep / "ticks_report"), "--throughput", str(H100_ROWS)])
    lengths = {16, 32, 1024, 4096, 16384, 32768}  # this sweep's throughput settings and the H100 rows'
    for ax in drawn["throughput_vs_context"].axes:
        assert set(labelled_ticks(ax, "x")) == lengths and {"1K", "32K"} <= set(labelled_ticks(ax, "x").values())
    rows = [r for n in range(len(RATIOS)) for r in json.loads((sweep / str(n) / "eval.json").read_text())["recall"]]
    for ax in drawn["recall_vs_length"].axes:  # the multiples scored (of suite.recall.multiples=[1,2])
        scored = {float(r["multiple"]) for r in rows if r["task"] == ax.get_title() and r["accuracy"] is not None}
        assert labelled_ticks(ax, "x") == {m: f"{m:g}" for m in scored}


def test_report_of_a_folder_without_runs_is_one_error(tmp_path):
    with pytest.raises(SystemExit, match=f"error: report: no runs under '{tmp_path}'"):
        main([str(tmp_path)])


def test_results_notebook_executes_on_the_sweep(sweep, monkeypatch):
    monkeypatch.setenv("HD_SWEEP_DIR", str(sweep))
    monkeypatch.setenv("HD_THROUGHPUT", str(H100_ROWS))
    notebook = nbformat.read(REPO / "notebooks" / "results.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO / "notebooks")}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    markdown = "\n".join(o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
    assert len(images) == 4
    assert "| mamba_ratio=0.5 |" in markdown and "| mamba_ratio=0.75 |" in markdown and "| mqar |" in markdown
    assert (sweep / "report" / "recall_vs_length.png").is_file()


def test_legends_name_settings_and_each_loss_objective_gets_its_own_axis(tmp_path):
    import pandas as pd

    from hybrid_distill.eval.report import group_label, loss_curves, loss_panels

    assert group_label(["loss"], ("kl",)) == "loss=kl"  # pandas' key for a one-column groupby is a 1-tuple
    assert group_label(["loss", "backend"], ("kl", "triton")) == "loss=kl, backend=triton"
    assert group_label([], ()) == "all runs"
    dirs = []
    for name in ("a", "b", "c"):
        (tmp_path / name / "distill").mkdir(parents=True)
        pd.DataFrame({"step": [1, 2], "train/loss": [2.0, 1.0]}).to_csv(tmp_path / name / "distill" / "metrics.csv")
        dirs.append(str(tmp_path / name))
    runs = pd.DataFrame({"run": ["a", "b", "c"], "dir": dirs, "loss": ["kl", "kl_sft", "kl"]})
    assert loss_panels(loss_curves(runs)) == [("distill", "train/loss (kl)"), ("distill", "train/loss (kl_sft)")]
