"""`python eval.py ckpt=...` end to end on a tiny distilled run: JSON (never overwritten), W&B, the metrics' agreement
with the distill stage's own validation, every form of `ckpt`, and one clear error for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from helpers import REPO, compose_config, compose_eval, save_run_config
from hybrid_distill import cli
from hybrid_distill.errors import UserError
from hybrid_distill.paths import config_dir
from hybrid_distill.stages.eval import evaluate_from_config, run_eval
from hybrid_distill.eval.results import results_files, write_new_json
from hybrid_distill.eval.samples import held_out_prompts
from hybrid_distill.runtime import run_context

# a small suite: every section runs, in seconds
SMALL_SUITE = [
    "suite.quality.batch_size=4",
    "suite.quality.max_batches=2",  # the distill stage's validation batches (TINY)
    "suite.recall.multiples=[1,2]",
    "suite.recall.num_examples=4",
    "suite.recall.min_teacher_accuracy=null",  # score every length (the 4-step tiny models are at chance)
    "suite.throughput.prompt_lens=[16]",
    "suite.throughput.batches=[2]",
    "suite.throughput.new_tokens=4",
    "suite.speculative.num_prompts=1",
    "suite.speculative.max_new_tokens=8",
    "suite.speculative.prompt_len=16",
    "suite.samples.num_prompts=2",
    "suite.samples.max_new_tokens=6",
]


@pytest.fixture(scope="module")
def distilled_run(tiny_teacher, tmp_path_factory) -> Path:
    """A finished 4-step distill run with its Hydra config and a Lightning checkpoint."""
    run_dir = tmp_path_factory.mktemp("distill_run")
    cfg = compose_config(run_dir, ["logger=csv", "callbacks.model_checkpoint.every_n_train_steps=2"])
    save_run_config(cfg, run_dir)
    cli.run(cfg)
    return run_dir


def test_eval_of_a_run_dir(distilled_run, tmp_path):
    summary = evaluate_from_config(compose_eval(tmp_path, [f"ckpt={distilled_run}", *SMALL_SUITE]))
    path = Path(summary["eval_json"])
    assert path == distilled_run / "eval.json"
    results = json.loads(path.read_text())
    trained = json.loads((distilled_run / "metrics.json").read_text())
    # held-out quality = what the distill stage's own validation measured on the same batches
    q = results["quality"]
    for key in ("student_ppl", "teacher_ppl", "kl", "top1_agree"):
        assert q[key] == pytest.approx(trained[key], rel=1e-4, abs=1e-6), key
    assert results["pattern"] == trained["pattern"] and results["train_length"] == 64
    recall = results["recall"]
    assert {(r["task"], r["length"], r["model"]) for r in recall} == {
        (t, n, m) for t in ("mqar", "phonebook", "copy", "needle") for n in (64, 128) for m in ("student", "teacher")
    }
    assert all(r["accuracy"] is None or 0 <= r["accuracy"] <= 1 for r in recall)
    teacher_row, student_row = results["throughput"]
    assert (teacher_row["model"], student_row["model"]) == ("teacher", "student")
    # KV cache after 16 prompt + 2 warm-up + 4 decoded tokens, batch 2: layers * (K, V) * B * Hkv * S * hd * 4 bytes
    assert teacher_row["state_bytes"] == 4 * 2 * 2 * 2 * (16 + 2 + 4) * 16 * 4
    assert student_row["decode_tok_s"] > 0 and student_row["decode_speedup_vs_teacher"] > 0
    assert results["speculative"]["exact_match"] is True
    assert results["speculative"]["committed"] == 8
    assert summary["quality/kl"] == q["kl"] and "recall/mqar/1x/student" in summary
    # greedy answers side by side for held-out (test split) prompts
    samples = results["samples"]
    assert [row["prompt"] for row in samples] == held_out_prompts("builtin", 2)
    assert all(set(row) == {"prompt", "student", "teacher"} for row in samples)

    # W&B: an offline run beside the training run, with the recall table's rows
    wandb_dir = Path(results["wandb_dir"])
    assert wandb_dir.parent == distilled_run / "wandb" and wandb_dir.name.startswith("offline-run-")
    table = json.loads(next((wandb_dir / "files" / "media" / "table" / "eval").glob("recall_*.table.json")).read_text())
    assert len(table["data"]) == len(recall)

    # a second evaluation gets its own file; the first is untouched
    first = path.read_bytes()
    again = evaluate_from_config(
        compose_eval(
            tmp_path / "again",
            [
                f"ckpt={distilled_run / 'student'}",
                "suite.recall.enabled=false",
                "suite.throughput.enabled=false",
                "suite.speculative.enabled=false",
                *SMALL_SUITE,
            ],
        )
    )
    assert Path(again["eval_json"]) == distilled_run / "eval-2.json" and path.read_bytes() == first
    assert again["quality/student_ppl"] == pytest.approx(q["student_ppl"], rel=1e-6)


def test_eval_of_a_lightning_checkpoint(distilled_run, tmp_path):
    ckpt = distilled_run / "distill" / "checkpoints" / "last.ckpt"
    summary = evaluate_from_config(
        compose_eval(
            tmp_path,
            [
                f"ckpt={ckpt}",
                "logger=none",
                "suite.recall.enabled=false",
                "suite.throughput.enabled=false",
                "suite.speculative.enabled=false",
                *SMALL_SUITE,
            ],
        )
    )
    trained = json.loads((distilled_run / "metrics.json").read_text())
    assert summary["quality/student_ppl"] == pytest.approx(trained["student_ppl"], rel=1e-4)


def test_bad_ckpt_is_one_clear_error(tmp_path, distilled_run):
    not_a_ckpt = tmp_path / "notes.txt"
    not_a_ckpt.write_text("x")
    empty_run = tmp_path / "run"
    (empty_run / ".hydra").mkdir(parents=True)
    (empty_run / ".hydra" / "config.yaml").write_text((distilled_run / ".hydra" / "config.yaml").read_text())
    cases = {
        tmp_path / "missing": "does not exist",
        not_a_ckpt: "not a Lightning checkpoint",
        tmp_path: "neither a run directory",
        empty_run: "without a saved student",
    }
    for path, message in cases.items():
        with pytest.raises(UserError, match=message) as err:
            evaluate_from_config(compose_eval(tmp_path / "out", [f"ckpt={path}", "logger=none"]))
        assert str(path) in str(err.value)


def test_eval_cli_reports_a_missing_ckpt_in_one_line(tmp_path):
    missing = tmp_path / "no_such_run"
    proc = subprocess.run(
        [sys.executable, str(REPO / "eval.py"), f"ckpt={missing}", "logger=none", f"hydra.run.dir={tmp_path / 'out'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = " ".join((proc.stdout + proc.stderr).split())  # the console wraps long lines
    assert proc.returncode == 2
    assert f"ckpt '{missing}' does not exist" in output and "Traceback" not in output


def test_results_json_is_never_overwritten(tmp_path):
    paths = [write_new_json(tmp_path, {"n": n}) for n in range(3)]
    assert [p.name for p in paths] == ["eval.json", "eval-2.json", "eval-3.json"]
    assert results_files(tmp_path) == paths
    assert [json.loads(p.read_text())["n"] for p in paths] == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval-2.json", "eval-3.json", "eval.json"]  # no temp files


def test_eval_as_a_pipeline_stage(distilled_run, tmp_path):
    """run_eval takes a train config whose `stage` holds the suite (conf/eval/default.yaml) and `stage.ckpt`."""
    cfg = compose_config(tmp_path, ["logger=none"])
    suite = OmegaConf.load(Path(config_dir()) / "eval" / "default.yaml")
    small = OmegaConf.from_dotlist(
        [o.removeprefix("suite.") for o in SMALL_SUITE]
        + ["recall.enabled=false", "throughput.enabled=false", "speculative.enabled=false"]
    )
    with open_dict(cfg):
        cfg.stage = OmegaConf.merge(
            suite, small, {"name": "eval", "max_steps": 0, "ckpt": str(distilled_run / "student")}
        )
    summary = run_eval(cfg, run_context(cfg))
    written = Path(summary["eval_json"])
    assert written.parent == distilled_run and written.name.startswith("eval")
    trained = json.loads((distilled_run / "metrics.json").read_text())
    assert summary["quality/top1_agree"] == pytest.approx(trained["top1_agree"], rel=1e-4)
