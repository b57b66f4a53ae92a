"""Stage `dpo`: preference optimisation of a distilled student (reference = that same student, frozen)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from transformers import AutoTokenizer

from ..errors import UserError, reported_as_user_error
from ..lit.dpo import DPOModule
from ..lit.settings import DPOLoss, OptimSettings, from_config
from ..lit.tokens import tokens_seen
from ..models import set_trainable
from ..runtime import RunContext, build_trainer, finish_logger
from .common import fit_and_validate, master_weights, metric, save_trained, seed_everything, stage_datamodule
from .student import load_student


def run_dpo(cfg: DictConfig, run: RunContext) -> dict:
    source = Path(str(cfg.stage.init_from)) if cfg.stage.init_from else None
    if source is None or not (source / "config.json").is_file():
        raise UserError(
            f"stage.init_from '{source}' must be a saved student directory (the distill stage's "
            "<run dir>/student); DPO starts from it and uses it as the reference model"
        )
    if cfg.loss.name != "dpo":
        raise UserError(f"stage=dpo needs loss=dpo (got loss={cfg.loss.name})")
    loss = from_config(DPOLoss, cfg.loss, "loss")
    seed_everything(cfg.seed)
    policy = load_student("stage.init_from", source, cfg.scan_backend)
    with reported_as_user_error("stage.trainable"):
        set_trainable(policy, cfg.stage.trainable)
    master_weights(cfg, policy)
    with reported_as_user_error(f"stage.init_from '{source}'"):
        tokenizer = AutoTokenizer.from_pretrained(str(source))
    recipe = cfg.stage
    datamodule = stage_datamodule(cfg, tokenizer)
    max_steps = int(cfg.trainer.max_steps)
    module = DPOModule(policy, loss, from_config(OptimSettings, recipe, "stage"), max_steps)
    trainer, logger, ckpt_path = build_trainer(cfg, run, "dpo", module, max_steps, recipe.grad_clip, recipe.val_every)
    before, after = fit_and_validate(trainer, module, datamodule, ckpt_path)
    student_dir = save_trained(trainer, policy, tokenizer, run.output_dir / "dpo_student")
    return {
        "logp_margin_before": metric(before, "val/logp_margin"),
        "logp_margin": float(after["val/logp_margin"]),
        "reward_accuracy": float(after["val/reward_accuracy"]),
        "tokens_seen": tokens_seen(trainer),
        "student_dir": str(student_dir),
        "wandb_dir": finish_logger(logger),
    }
