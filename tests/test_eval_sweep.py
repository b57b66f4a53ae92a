"""The README's main loop on a real sweep: `python train.py -m ...`, then `python eval.py ckpt=...` of each member in
each form (run directory, student directory, Lightning checkpoint), then `python -m hybrid_distill.report <sweep>`;
and a Slurm request previewed with `--cfg hydra --resolve`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers import QUICK_SUITE, REPO, compose_eval, eval_cli
from hybrid_distill.eval.loading import resolve_checkpoint
from hybrid_distill.stages.eval import evaluate_from_config, run_identity


def forms(member: Path) -> list[Path]:
    """The three things `ckpt=` may name in a sweep member."""
    return [member, member / "student", member / "distill" / "checkpoints" / "last.ckpt"]


def members(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())


def reported_rows(sweep: Path, out: Path) -> dict[str, dict[str, str]]:
    """`python -m hybrid_distill.report <sweep>`: its table as {run label: {column: cell}}."""
    proc = subprocess.run(
        [sys.executable, "-m", "hybrid_distill.report", str(sweep), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = [line.strip("|").split(" | ") for line in proc.stdout.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in table[0]]
    return {row[0].strip(): dict(zip(header, (cell.strip() for cell in row))) for row in table[2:]}


def newest_quality(member: Path) -> dict:
    return json.loads(max(member.glob("eval*.json"), key=lambda p: p.stat().st_mtime_ns).read_text())["quality"]


def test_each_member_of_a_real_sweep_evaluates_in_every_form_and_reports(tiny_sweep, tmp_path):
    runs = members(tiny_sweep)
    assert len(runs) == 2
    for member in runs:
        # the evaluation joins its training run's W&B group and name, read from the member's saved .hydra/hydra.yaml
        identity = run_identity(resolve_checkpoint(str(member)), tmp_path)
        assert identity.group == f"sweep-{tiny_sweep.name}" and "mamba_ratio=" in identity.name
        written = []
        for ckpt in forms(member):
            summary = evaluate_from_config(
                compose_eval(tmp_path / "eval", [f"ckpt={ckpt}", "logger=none", *QUICK_SUITE])
            )
            written.append(Path(summary["eval_json"]))
            assert math.isfinite(summary["quality/student_ppl"]) and math.isfinite(summary["quality/kl"])
        assert written == [member / "eval.json", member / "eval-2.json", member / "eval-3.json"]
        pattern = json.loads((member / "metrics.json").read_text())["pattern"]
        assert {json.loads(p.read_text())["pattern"] for p in written} == {pattern}

    rows = reported_rows(tiny_sweep, tmp_path / "report")
    assert set(rows) == {"mamba_ratio=0.5", "mamba_ratio=0.75"}
    for member in runs:
        (row,) = (
            r for r in rows.values() if r["pattern"] == json.loads((member / "metrics.json").read_text())["pattern"]
        )
        assert float(row["eval/quality/student_ppl"]) == pytest.approx(newest_quality(member)["student_ppl"], rel=1e-3)
    assert (tmp_path / "report" / "report.md").is_file()


@pytest.mark.slow
def test_the_readme_loop_through_the_command_line(tiny_sweep, cache_dir, tmp_path):
    """As a user types it: eval.py on every member in every form, then the report."""
    for member in members(tiny_sweep):
        for ckpt in forms(member):
            proc = eval_cli([f"ckpt={ckpt}", "logger=csv", *QUICK_SUITE], tmp_path, cache_dir)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
            results = Path(proc.stdout.strip().splitlines()[-1].removeprefix("results: "))
            assert results.parent == member and results.is_file()
    assert not any((tmp_path / "eval" / "runs").iterdir())  # no directory of eval.py's own is left
    rows = reported_rows(tiny_sweep, tmp_path / "report")
    assert len(rows) == 2 and all(row["eval/quality/student_ppl"] for row in rows.values())


def test_a_slurm_request_is_previewed_resolved(tmp_path):
    """`--cfg hydra --resolve` shows what a sweep member asks Slurm for (Hydra alone would fail: the launcher
    interpolates the trainer, the sweep directory paths.log_dir)."""
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "trainer=gpu",
            "hydra/launcher=submitit_slurm",
            "--cfg",
            "hydra",
            "--resolve",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HD_LOG_DIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    launcher = OmegaConf.create(proc.stdout).launcher  # the `hydra` node, as a package of the whole config
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.name) == (1, 1, "hd-train-distill")
    assert launcher.submitit_folder.startswith(str(tmp_path / "train" / "multiruns"))
