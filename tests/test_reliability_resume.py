"""Exact resume and preemption: a run stopped by a signal and resumed trains on exactly the batches, randomness and
optimizer/scheduler state of the uninterrupted run (toy model through the real Trainer wiring, then the CLI)."""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader, TensorDataset

from helpers import compose_config
from hybrid_distill.cli import run
from hybrid_distill.errors import Preempted
from hybrid_distill.lit.optim import configure_adamw
from hybrid_distill.lit.settings import OptimSettings
from hybrid_distill.reliability.checkpoints import last_checkpoint
from hybrid_distill.reliability.rundir import check_resume_dir
from hybrid_distill.data.resumable_loader import ResumableDataLoader
from hybrid_distill.runtime import build_trainer, run_context
from hybrid_distill.stages import seqkd
from helpers import train_cli

TOY_STEPS = 12  # 10 rows in batches of 2: 5 batches an epoch, so the runs cross epoch boundaries


class Toy(L.LightningModule):
    """Dropout (global RNG), AdamW with warmup + cosine (optimizer and scheduler state), validation every 3 steps."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.3), torch.nn.Linear(16, 1))
        self.losses: dict[int, float] = {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train/loss", loss)
        self.losses[self.global_step] = loss.item()
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

    def configure_optimizers(self):
        return configure_adamw(self.parameters(), OptimSettings(lr=1e-2, warmup_steps=3), TOY_STEPS)


class ToyData(L.LightningDataModule):
    def setup(self, stage=None):
        g = torch.Generator().manual_seed(0)
        self.rows = TensorDataset(torch.randn(10, 4, generator=g), torch.randn(10, 1, generator=g))

    def train_dataloader(self):  # shuffled by a seeded generator, like the real datamodules
        return ResumableDataLoader(self.rows, batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(1))

    def val_dataloader(self):
        return DataLoader(self.rows, batch_size=5)


def fit_toy(run_dir: Path, overrides: list[str] = (), module_cls: type[Toy] = Toy) -> Toy:
    """Train the toy with the Trainer a stage gets (config callbacks and plugins); resume its last.ckpt if any."""
    cfg = compose_config(run_dir, ["logger=none", "callbacks.tokens=null", *overrides])  # the toy's batches are tuples
    run = run_context(cfg)
    L.seed_everything(0)
    module = module_cls()
    trainer, _, ckpt = build_trainer(cfg, run, "toy", module, TOY_STEPS, grad_clip=None, val_every=3)
    trainer.fit(module, datamodule=ToyData(), ckpt_path=ckpt)
    return module


def drill(step: int, signal_name: str) -> list[str]:
    return [
        "callbacks=preemption_drill",
        f"callbacks.drill.at_step={step}",
        f"callbacks.drill.signal_name={signal_name}",
    ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[int, float]:
    return fit_toy(tmp_path_factory.mktemp("uninterrupted")).losses


# step 7: mid-epoch (dataloader position, RNG, scheduler); step 4: the last batch of an epoch
@pytest.mark.parametrize("step,signal_name", [(7, "SIGTERM"), (4, "SIGUSR1"), (7, "SIGUSR2"), (5, "SIGINT")])
def test_signal_saves_last_ckpt_and_the_resumed_run_is_exact(uninterrupted, tmp_path, step, signal_name):
    handlers_before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)}
    with pytest.raises(Preempted, match=f"{signal_name} at step {step + 1}: saved .*last.ckpt"):
        fit_toy(tmp_path, drill(step, signal_name))
    assert torch.load(last_checkpoint(tmp_path / "toy"), weights_only=True)["global_step"] == step + 1
    assert {s: signal.getsignal(s) for s in handlers_before} == handlers_before  # the handlers are put back

    resumed = fit_toy(tmp_path)
    assert sorted(resumed.losses) == list(range(step + 1, TOY_STEPS))
    assert resumed.losses == {s: loss for s, loss in uninterrupted.items() if s > step}  # bit-for-bit equal


def test_submitits_own_handler_runs_after_the_checkpoint_is_saved(tmp_path):
    """Under submitit, USR2's handler requeues the job and exits: it must see the checkpoint already written."""
    seen = []

    def submitit_like(signum, frame):
        seen.append((signum, last_checkpoint(tmp_path / "toy").is_file()))
        sys.exit(-1)

    previous = signal.signal(signal.SIGUSR2, submitit_like)
    try:
        with pytest.raises(SystemExit):
            fit_toy(tmp_path, drill(5, "SIGUSR2"))
        assert signal.getsignal(signal.SIGUSR2) is submitit_like
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert seen == [(signal.SIGUSR2, True)]


def _losses(metrics_csv: Path) -> dict[int, float]:
    with open(metrics_csv) as f:
        return {int(row["step"]): float(row["train/loss"]) for row in csv.DictReader(f) if row.get("train/loss")}


def test_cli_signalled_distill_exits_75_and_resume_gives_the_uninterrupted_losses(tiny_teacher, cache_dir, tmp_path):
    common = ["trainer.max_steps=8", "++stage.val_every=3"]
    run(compose_config(tmp_path / "full", [*common, "logger=csv"]))  # the uninterrupted run, in this process
    expected = _losses(tmp_path / "full" / "distill" / "metrics.csv")
    assert sorted(expected) == list(range(8))

    stopped = train_cli([*common, *drill(3, "SIGUSR1")], tmp_path, cache_dir)
    [run_dir] = (tmp_path / "train" / "runs").iterdir()
    assert stopped.returncode == 75, stopped.stderr[-3000:]
    assert (
        f"preempted: SIGUSR1 at step 4: saved {run_dir}/distill/checkpoints/last.ckpt; continue with "
        f"`python train.py resume={run_dir}`"
    ) in stopped.stdout
    assert "Traceback" not in stopped.stdout + stopped.stderr
    assert not (run_dir / "metrics.json").exists()  # the stage did not pretend to finish

    # the same command plus resume=<run dir> (a requeued job reruns in its own directory and resumes the same way)
    resumed = train_cli([*common, f"resume={run_dir}"], tmp_path, cache_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"distill: resuming from {run_dir}/distill/checkpoints/last.ckpt" in resumed.stdout + resumed.stderr
    assert [d.name for d in (tmp_path / "train" / "runs").iterdir()] == [run_dir.name]
    # metrics.csv kept the interrupted run's rows and continued them: every step once, each loss as uninterrupted.
    # Not bit-exact: CPU reductions on a loaded 2-core box have moved a loss by 1e-7 relative (seen in CI); a wrong
    # resume (data order, optimizer moments, RNG) moves it by > 1e-3.
    resumed_losses = _losses(run_dir / "distill" / "metrics.csv")
    assert sorted(resumed_losses) == sorted(expected)
    assert resumed_losses == pytest.approx(expected, rel=1e-5, abs=0)
    assert json.loads((run_dir / "metrics.json").read_text())["pattern"] == "MAMA"
    assert len(list(run_dir.rglob("offline-run-*"))) == 2  # both W&B runs are kept until `wandb sync`


def test_a_preempted_pipeline_skips_its_finished_steps_and_resumes_the_interrupted_one(tiny_teacher, tmp_path):
    common = ["logger=csv", "experiment=stepwise", "trainer.max_steps=3"]
    second_step_drilled = (
        "stage.steps.1.overrides=['mamba_ratio=0.75','callbacks=preemption_drill','callbacks.drill.at_step=1']"
    )
    with pytest.raises(Preempted, match=f"at step 2: saved {tmp_path}/ratio_0.75/distill/checkpoints/last.ckpt"):
        run(compose_config(tmp_path, [*common, second_step_drilled]))
    state_file = tmp_path / "pipeline_state.json"
    assert list(json.loads(state_file.read_text())["done"]) == ["ratio_0.5"]
    first_student = (tmp_path / "ratio_0.5" / "student" / "model.safetensors").stat().st_mtime_ns

    results = run(compose_config(tmp_path, common))  # the same run directory, as resume=<run dir> gives
    assert list(json.loads(state_file.read_text())["done"]) == ["ratio_0.5", "ratio_0.75", "ratio_0.875"]
    assert (tmp_path / "ratio_0.5" / "student" / "model.safetensors").stat().st_mtime_ns == first_student  # not rerun
    assert sorted(_losses(tmp_path / "ratio_0.75" / "distill" / "metrics.csv")) == [0, 1, 2]  # resumed at step 2
    assert results["ratio_0.875/pattern"] == "MMMM"


def test_a_resumed_seqkd_reuses_the_answers_it_saved(random_teacher_dir, tmp_path, monkeypatch):
    overrides = [
        "logger=none",
        "stage=seqkd",
        "stage.max_prompts=4",
        "stage.max_val_prompts=2",
        f"model.path={random_teacher_dir}",
    ]
    first = run(compose_config(tmp_path, overrides))

    def generate_again(*args, **kwargs):
        raise AssertionError("the answers were generated again")

    monkeypatch.setattr(seqkd, "generate_responses", generate_again)
    again = run(compose_config(tmp_path, overrides))  # the same run directory
    assert again["seqkd_rows"] == first["seqkd_rows"] == 4
    assert again["seqkd_dataset_dir"] == first["seqkd_dataset_dir"]


class KilledAtStep6(Toy):
    def configure_callbacks(self):
        class Kill(L.Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                if trainer.global_step == 6:
                    raise RuntimeError("killed")  # after the rows of steps 4-5 were written, past the step-4 checkpoint

        return [Kill()]


def test_metrics_csv_holds_each_step_once_after_resuming_from_an_earlier_checkpoint(uninterrupted, tmp_path):
    overrides = ["logger=csv", "callbacks.throughput=null", "callbacks.model_checkpoint.every_n_train_steps=4"]
    with pytest.raises(RuntimeError, match="killed"):
        fit_toy(tmp_path, overrides, module_cls=KilledAtStep6)
    assert sorted(_losses(tmp_path / "toy" / "metrics.csv")) == list(range(6))
    fit_toy(tmp_path, overrides)  # resumes from the step-4 checkpoint: steps 4 and 5 are logged again
    with open(tmp_path / "toy" / "metrics.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")]
    assert steps == list(range(TOY_STEPS))
    assert _losses(tmp_path / "toy" / "metrics.csv") == uninterrupted


def test_a_signal_during_seqkd_generation_keeps_the_answers_and_resume_continues(
    random_teacher_dir, tmp_path, monkeypatch
):
    overrides = [
        "logger=none",
        "stage=seqkd",
        "stage.max_prompts=6",
        "stage.max_val_prompts=2",
        "model.recipe.seqkd.batch_size=2",
        f"model.path={random_teacher_dir}",
    ]
    expected = run(compose_config(tmp_path / "uninterrupted", overrides))
    generate, batches, signalled = seqkd.generate_batch, [], []

    def signalled_after_the_first_batch(model, tokenizer, prompts, max_new_tokens):
        batches.append(len(prompts))
        if batches == [2] and not signalled:
            signalled.append(True)
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-batch: the batch finishes, then the run stops
        return generate(model, tokenizer, prompts, max_new_tokens)

    monkeypatch.setattr(seqkd, "generate_batch", signalled_after_the_first_batch)
    run_dir = tmp_path / "run"
    with pytest.raises(
        Preempted,
        match=r"SIGTERM during seqkd generation, after 2 of 6 prompts of train; 2 answers "
        rf"are saved in {run_dir}/seqkd_partial/train.jsonl",
    ):
        run(compose_config(run_dir, overrides))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back
    check_resume_dir(run_dir)  # resume= accepts the directory

    batches.clear()
    resumed = run(compose_config(run_dir, overrides))
    assert batches == [2, 2, 2]  # the 4 train prompts left, then the validation prompts: nothing twice
    assert not (run_dir / "seqkd_partial").exists()
    assert (
        load_from_disk(resumed["seqkd_dataset_dir"])["train"].to_list()
        == load_from_disk(expected["seqkd_dataset_dir"])["train"].to_list()
    )
