"""One process at a time works in a run directory: a second one is refused at once, naming the holder's PID, and
writes nothing; the lock dies with its holder (a killed run leaves none behind)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, TINY, compose_config, save_run_config
from test_reliability_resume import drill
from hybrid_distill.cli import run
from hybrid_distill.errors import Preempted
from hybrid_distill.exits import exit_on_user_error


def files(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file under `run_dir`: (size, modification time)."""
    return {
        str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns) for p in run_dir.rglob("*") if p.is_file()
    }


def train_in_background(args: list[str], log: Path, cache_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "HD_CACHE_DIR": str(cache_dir), "WANDB_MODE": "offline"}
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), *TINY, *args], cwd=log.parent, env=env, stdout=out, stderr=out
        )


def wait_for(log: Path, text: str, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        assert process.poll() is None, f"the run ended before printing {text!r}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} after {timeout_s} s"
        time.sleep(0.2)


def steps(metrics_csv: Path) -> list[int]:
    with open(metrics_csv) as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")]


def test_a_busy_run_directory_refuses_a_second_run_and_a_killed_holder_leaves_no_lock(
    tiny_teacher, cache_dir, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    common = ["logger=csv", "trainer.max_steps=8"]
    cfg = compose_config(run_dir, [*common, *drill(3, "SIGUSR1")])
    save_run_config(cfg, run_dir)  # the record Hydra writes before `python train.py` runs
    with pytest.raises(Preempted):  # a preempted run, with its checkpoint at step 4
        run(cfg)
    resume = [*common, f"resume={run_dir}"]
    holder = train_in_background(resume, tmp_path / "holder.log", cache_dir)
    try:
        wait_for(tmp_path / "holder.log", "distill: resuming from", holder)
        os.kill(holder.pid, signal.SIGSTOP)  # mid-run, holding the directory
        before = files(run_dir)
        with pytest.raises(SystemExit) as refused:  # what `python train.py resume=<run dir>` does now
            exit_on_user_error(run, compose_config(run_dir, resume))
        assert refused.value.code == 2
        [line] = [line for line in capsys.readouterr().out.splitlines() if "error:" in line]
        assert line.startswith(f"error: {run_dir} is in use by another run (PID {holder.pid});")
        assert files(run_dir) == before  # nothing written
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # the holder dies without a chance to clean up
        holder.wait()
    # Lightning's INFO lines went through one handler (its own console handler and Hydra's root handlers printed
    # each one twice)
    assert (tmp_path / "holder.log").read_text().count("distill: resuming from") == 1

    run(compose_config(run_dir, resume))  # the kernel released the killed holder's lock
    assert steps(run_dir / "distill" / "metrics.csv") == list(range(8))
