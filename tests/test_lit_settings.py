"""The typed settings stages hand their LightningModules: every loss option of conf/loss/ builds one, a missing or
wrong value is one error naming its key, and each setting reaches the loss."""

from __future__ import annotations

import pytest
import torch

from helpers import compose_config
from hybrid_distill.errors import UserError
from hybrid_distill.lit.distill import DistillModule
from hybrid_distill.lit.settings import DistillLoss, DPOLoss, OptimSettings, from_config


@pytest.mark.parametrize("loss", ["kl", "kl_sft", "sft", "rkl", "jsd"])
def test_every_distillation_loss_config_builds_its_settings(tmp_path, loss):
    cfg = compose_config(tmp_path, [f"loss={loss}"])
    settings = from_config(DistillLoss, cfg.loss, "loss")
    assert settings.divergence == cfg.loss.divergence and settings.ce_weight == cfg.loss.ce_weight
    optim = from_config(OptimSettings, cfg.stage, "stage")
    assert optim.lr == cfg.stage.lr and optim.betas == (0.9, 0.98)


def test_dpo_loss_config_builds_its_settings(tmp_path):
    cfg = compose_config(tmp_path, ["stage=dpo"])
    assert from_config(DPOLoss, cfg.loss, "loss") == DPOLoss(
        dpo_beta=0.01, loss_type="sigmoid", label_smoothing=0.0, ce_weight=0.0
    )


def test_missing_or_wrong_settings_name_their_key():
    # the settings' defaults are their schema's (config_schema.py); a field without one must come from the config
    with pytest.raises(UserError, match=r"model.recipe.pretrain_teacher: missing model.recipe.pretrain_teacher\.lr"):
        from_config(OptimSettings, {"warmup_steps": 10}, "model.recipe.pretrain_teacher")
    with pytest.raises(UserError, match="loss.loss_type='hinge'"):
        DPOLoss(dpo_beta=0.1, loss_type="hinge", label_smoothing=0.0, ce_weight=0.0)


def test_t2_scaling_multiplies_the_divergence_by_the_squared_temperature():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 11), torch.randn(2, 5, 11)  # (B, T, V)
    mask = torch.ones(2, 5, dtype=torch.bool)

    def divergence(t2_scaling: bool) -> torch.Tensor:
        loss = DistillLoss(
            divergence="kl",
            divergence_weight=1.0,
            ce_weight=0.0,
            temperature=2.0,
            t2_scaling=t2_scaling,
            jsd_beta=0.5,
            vocab_chunk=None,
        )
        module = DistillModule(torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), loss, OptimSettings(lr=1e-3), 1)
        return module._divergence(student, teacher, mask)

    torch.testing.assert_close(divergence(True), 4.0 * divergence(False))
