"""Stage `distill`: teacher -> hybrid student with the `loss` mix; evaluates perplexity before and after."""

from __future__ import annotations

from omegaconf import DictConfig

from ..console import console
from ..errors import UserError
from ..lit.distill import DistillModule
from ..lit.settings import DistillLoss, OptimSettings, SpeedSettings, from_config
from ..lit.speed import prepare_frozen_teacher, prepare_trained
from ..lit.tokens import tokens_seen
from ..runtime import RunContext, build_trainer, finish_logger
from .common import fit_and_validate, master_weights, metric, save_trained, seed_everything, stage_datamodule
from .student import calibrate_from_config, describe_student, student_from_config
from .teacher import obtain_teacher


def run_distill(cfg: DictConfig, run: RunContext) -> dict:
    if "divergence" not in cfg.loss:
        raise UserError(f"loss={cfg.loss.name} is not a distillation loss; use it with stage={cfg.loss.name}")
    loss = from_config(DistillLoss, cfg.loss, "loss")
    speed = from_config(SpeedSettings, cfg.speed, "speed")
    speed.check_loss(loss)  # before any model is loaded
    teacher, tokenizer = obtain_teacher(cfg, run)
    seed_everything(cfg.seed)
    student = student_from_config(cfg, teacher)
    info = describe_student(student)
    console.print(
        f"student: pattern [bold]{info['pattern']}[/] "
        f"({info['params/trainable']:,} of {info['params/total']:,} parameters train)"
    )
    recipe = cfg.stage
    datamodule = stage_datamodule(cfg, tokenizer)
    info.update(calibrate_from_config(cfg, student, teacher, datamodule))
    max_steps = int(cfg.trainer.max_steps)
    # after calibration, which runs both models once, eagerly
    prepare_frozen_teacher(teacher, speed)
    master_weights(cfg, student)
    prepare_trained(student, speed)
    module = DistillModule(teacher, student, loss, from_config(OptimSettings, recipe, "stage"), max_steps, speed)
    trainer, logger, ckpt_path = build_trainer(
        cfg, run, "distill", module, max_steps, recipe.grad_clip, recipe.val_every
    )
    for one in logger or []:
        one.log_hyperparams(info)
    train = info["params/trainable"] > 0
    if not train:  # e.g. mamba_ratio=0 with student.trainable=mamba: the teacher baseline of a sweep
        console.print(
            f"nothing to train (pattern {info['pattern']}, student.trainable={cfg.student.trainable}): evaluated only"
        )
    before, after = fit_and_validate(trainer, module, datamodule, ckpt_path, train=train)
    student_dir = save_trained(trainer, student, tokenizer, run.output_dir / "student")
    wandb_dir = finish_logger(logger)
    return {
        "pattern": info["pattern"],
        "params/total": info["params/total"],
        "params/trainable": info["params/trainable"],
        "teacher_ppl": float(after["val/teacher_ppl"]),
        "student_ppl_before": metric(before, "val/student_ppl"),
        "student_ppl": float(after["val/student_ppl"]),
        "kl_before": metric(before, "val/kl"),
        "kl": float(after["val/kl"]),
        "top1_agree": float(after["val/top1_agree"]),
        "init_from": cfg.student.init_from,
        "train_seq_len": int(recipe.seq_len),
        "data_source": str(cfg.data.source) if "source" in cfg.data else None,
        "tokens_seen": tokens_seen(trainer),
        "student_dir": str(student_dir),
        "wandb_dir": wandb_dir,
    }
