"""Stage `distill`: teacher -> hybrid student with the `loss` mix; evaluates perplexity before and after."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..console import console
from ..errors import UserError
from ..lit.distill import DistillModule
from ..lit.settings import DistillLoss, OptimSettings, from_config
from ..lit.tokens import tokens_seen
from ..runtime import RunContext, build_trainer, finish_logger, resume_path
from ..data.build import build_datamodule
from .common import metric, seed_everything, validate_before_fit
from .student import calibrate_from_config, describe_student, student_from_config
from .teacher import obtain_teacher


def run_distill(cfg: DictConfig, run: RunContext) -> dict:
    if "divergence" not in cfg.loss:
        raise UserError(f"loss={cfg.loss.name} is not a distillation loss; use it with stage={cfg.loss.name}")
    loss = from_config(DistillLoss, cfg.loss, "loss")
    teacher, tokenizer = obtain_teacher(cfg, run)
    seed_everything(cfg.seed)
    student = student_from_config(cfg, teacher)
    info = describe_student(student)
    console.print(f"student: pattern [bold]{info['pattern']}[/] "
                  f"({info['params/trainable']:,} of {info['params/total']:,} parameters train)")
    recipe = cfg.stage
    datamodule = build_datamodule(cfg.data, tokenizer, recipe.batch_size, recipe.seq_len,
                                  str(Path(cfg.paths.cache_dir) / "datasets"), cfg.seed)
    info.update(calibrate_from_config(cfg, student, teacher, datamodule))
    max_steps = int(cfg.trainer.max_steps)
    module = DistillModule(teacher, student, loss, from_config(OptimSettings, recipe, "stage"), max_steps)
    trainer, logger = build_trainer(cfg, run, "distill", max_steps, recipe.grad_clip, recipe.val_every)
    for one in logger or []:
        one.log_hyperparams(info)
    before = validate_before_fit(trainer, module, datamodule)
    if info["params/trainable"] > 0:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_path(cfg, run, "distill", module),
                    weights_only=True)
        after = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    else:  # e.g. mamba_ratio=0 with student.trainable=mamba: the teacher baseline of a sweep
        console.print(f"nothing to train (pattern {info['pattern']}, student.trainable={cfg.student.trainable}): "
                      "evaluated only")
        after = before or trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    student_dir = run.output_dir / "student"
    if trainer.is_global_zero:
        student.save_pretrained(str(student_dir))
        tokenizer.save_pretrained(str(student_dir))
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
        "tokens_seen": tokens_seen(trainer),
        "student_dir": str(student_dir),
        "wandb_dir": wandb_dir,
    }
