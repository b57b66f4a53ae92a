"""A nan/inf loss or gradient stops training with the step and the value named, keeping the last checkpoint whose
weights and loss were finite; callbacks.nonfinite.action=skip drops such batches instead and counts them, up to
callbacks.nonfinite.max_skipped_fraction of the steps."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from helpers import compose_config
from hybrid_distill.cli import run
from hybrid_distill.errors import TrainingDiverged
from hybrid_distill.lit.distill import DistillModule
from hybrid_distill.reliability.checkpoints import last_checkpoint
from test_reliability_resume import TOY_STEPS, Toy, fit_toy


def nan_divergence_at(monkeypatch, steps: set[int]) -> None:
    """The distillation divergence becomes nan at these optimizer steps."""
    divergence = DistillModule._divergence

    def poisoned(self, *args):
        value = divergence(self, *args)
        return value * float("nan") if self.global_step in steps else value

    monkeypatch.setattr(DistillModule, "_divergence", poisoned)


def test_nan_loss_stops_naming_step_and_component_and_keeps_the_last_good_checkpoint(
    tiny_teacher, tmp_path, monkeypatch
):
    nan_divergence_at(monkeypatch, {3})
    cfg = compose_config(
        tmp_path, ["logger=csv", "trainer.max_steps=6", "callbacks.model_checkpoint.every_n_train_steps=2"]
    )
    finite = last_checkpoint(tmp_path / "distill").with_name("last-finite.ckpt")
    with pytest.raises(
        TrainingDiverged,
        match=rf"^step 3: train/divergence is nan, .*the last checkpoint with finite "
        rf"weights and loss is {finite}: start a new run from its weights with a fresh optimizer, e.g. at a lower "
        rf"stage.lr, with weights_from={finite} \(ckpt_path=",
    ):
        run(cfg)
    checkpoint = torch.load(finite, weights_only=True)
    assert checkpoint["global_step"] == 2  # the nan step did not overwrite it
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
    assert not (tmp_path / "student").exists() and not (tmp_path / "metrics.json").exists()


def test_skip_drops_nan_batches_and_counts_them(tiny_teacher, tmp_path, monkeypatch):
    nan_divergence_at(monkeypatch, {1, 3})
    results = run(
        compose_config(
            tmp_path,
            [
                "logger=csv",
                "trainer.max_steps=5",
                "callbacks.nonfinite.action=skip",
                "callbacks.nonfinite.max_skipped_fraction=0.4",
            ],
        )
    )
    assert math.isfinite(results["student_ppl"]) and math.isfinite(results["kl"])
    with open(tmp_path / "distill" / "metrics.csv") as f:
        skipped = {
            int(r["step"]): float(r["train/skipped_batches"]) for r in csv.DictReader(f) if r["train/skipped_batches"]
        }
    assert skipped == {0: 0, 1: 1, 2: 1, 3: 2, 4: 2}


class NanGradientToy(Toy):
    """A finite loss whose gradient for net.0.weight is nan (d/dx sqrt(|x|) at 0)."""

    def training_step(self, batch, batch_idx):
        weight = self.net[0].weight
        return super().training_step(batch, batch_idx) + torch.sqrt((weight - weight.detach()).abs().sum())


def test_nan_gradient_is_named_by_parameter(tmp_path):
    with pytest.raises(TrainingDiverged, match="^step 0: the gradient of net.0.weight is not finite"):
        fit_toy(tmp_path, module_cls=NanGradientToy)


def test_skipped_batches_leave_parameters_and_optimizer_moments_untouched(tmp_path):
    torch.manual_seed(0)
    initial = {k: v.clone() for k, v in NanGradientToy().state_dict().items()}  # fit_toy seeds the same way
    module = fit_toy(
        tmp_path,
        ["callbacks.nonfinite.action=skip", "callbacks.nonfinite.max_skipped_fraction=1"],
        module_cls=NanGradientToy,
    )
    assert module.trainer.global_step == TOY_STEPS  # every step was attempted, and skipped
    assert all(torch.equal(initial[k], v) for k, v in module.state_dict().items())
    assert module.trainer.optimizers[0].state == {}  # AdamW never saw a gradient


class BlowsUpAfterStep(Toy):
    """Step 3's update leaves the weights finite but huge: every loss from step 4 on is inf."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if self.global_step == 3:
            with torch.no_grad():
                self.net[0].weight.fill_(2.5e29)  # as if this step's update had done it
        return loss if self.global_step < 4 else loss * float("inf")


def test_the_named_checkpoint_is_the_last_one_whose_weights_gave_a_finite_loss(tmp_path):
    """last.ckpt of step 4 holds the blown-up weights (finite, so nothing failed when it was saved); the checkpoint
    named must be step 3's, the last one whose weights the next step found finite."""
    with pytest.raises(TrainingDiverged, match=r"^step 4: train/loss is inf.*last-finite.ckpt"):
        fit_toy(tmp_path, ["callbacks.model_checkpoint.every_n_train_steps=1"], module_cls=BlowsUpAfterStep)
    last = last_checkpoint(tmp_path / "toy")
    assert torch.load(last, weights_only=True)["global_step"] == 4
    finite = torch.load(last.with_name("last-finite.ckpt"), weights_only=True)
    assert finite["global_step"] == 3
    assert all(torch.isfinite(t).all() and t.abs().max() < 1e6 for t in finite["state_dict"].values())


def test_skipping_more_than_the_allowed_fraction_stops_the_run(tmp_path):
    # every step's gradient is nan: 12 steps at most 0.25 skipped -> the 4th skip stops it
    with pytest.raises(
        TrainingDiverged,
        match=r"^step 3: the gradient of net.0.weight is not finite; 4 batches "
        r"skipped, more than callbacks.nonfinite.max_skipped_fraction=0.25 "
        r"of the run's 12 steps",
    ):
        fit_toy(
            tmp_path,
            ["callbacks.nonfinite.action=skip", "callbacks.nonfinite.max_skipped_fraction=0.25"],
            module_cls=NanGradientToy,
        )
