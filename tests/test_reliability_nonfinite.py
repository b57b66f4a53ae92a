"""A nan/inf loss or gradient stops training with the step and the value named, keeping the last good checkpoint;
callbacks.nonfinite.action=skip drops such batches instead and counts them."""

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


def test_nan_loss_stops_naming_step_and_component_and_keeps_the_last_good_checkpoint(tiny_teacher, tmp_path,
                                                                                     monkeypatch):
    nan_divergence_at(monkeypatch, {3})
    cfg = compose_config(tmp_path, ["logger=csv", "trainer.max_steps=6", "callbacks.model_checkpoint.every_n_train_steps=2"])
    last = last_checkpoint(tmp_path / "distill")
    with pytest.raises(TrainingDiverged, match=rf"^step 3: train/divergence is nan, .*the last good checkpoint is {last}"):
        run(cfg)
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["global_step"] == 2  # the nan step did not overwrite it
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
    assert not (tmp_path / "student").exists() and not (tmp_path / "metrics.json").exists()


def test_skip_drops_nan_batches_and_counts_them(tiny_teacher, tmp_path, monkeypatch):
    nan_divergence_at(monkeypatch, {1, 3})
    results = run(compose_config(tmp_path, ["logger=csv", "trainer.max_steps=5", "callbacks.nonfinite.action=skip"]))
    assert math.isfinite(results["student_ppl"]) and math.isfinite(results["kl"])
    with open(tmp_path / "distill" / "metrics.csv") as f:
        skipped = {int(r["step"]): float(r["train/skipped_batches"]) for r in csv.DictReader(f) if r["train/skipped_batches"]}
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
    module = fit_toy(tmp_path, ["callbacks.nonfinite.action=skip"], module_cls=NanGradientToy)
    assert module.trainer.global_step == TOY_STEPS  # every step was attempted, and skipped
    assert all(torch.equal(initial[k], v) for k, v in module.state_dict().items())
    assert module.trainer.optimizers[0].state == {}  # AdamW never saw a gradient
