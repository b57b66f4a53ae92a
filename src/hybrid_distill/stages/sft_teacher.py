"""Stage `sft_teacher`: plain supervised fine-tuning of the teacher alone (next-token CE, every weight trains), through
the same trainer, callbacks, data and speed switches as `distill`: the same-run baseline of a distillation step's
tokens/s and MFU (experiments/train_throughput/)."""

from __future__ import annotations

from omegaconf import DictConfig

from ..console import console
from ..lit.settings import OptimSettings, SpeedSettings, from_config
from ..lit.speed import prepare_teacher_attention, prepare_trained
from ..lit.teacher_pretrain import TeacherPretrainModule
from ..lit.tokens import tokens_seen
from ..runtime import RunContext, build_trainer, finish_logger
from .common import fit_and_validate, metric, save_trained, seed_everything, stage_datamodule
from .teacher import obtain_teacher


def run_sft_teacher(cfg: DictConfig, run: RunContext) -> dict:
    speed = from_config(SpeedSettings, cfg.speed, "speed")
    teacher, tokenizer = obtain_teacher(cfg, run)
    # trained in model.dtype under the trainer's precision, as distill's student (built in its teacher's dtype) is
    teacher.train().requires_grad_(True)
    seed_everything(cfg.seed)
    recipe = cfg.stage
    datamodule = stage_datamodule(cfg, tokenizer)
    prepare_teacher_attention(teacher, speed)
    prepare_trained(teacher, speed)
    max_steps = int(cfg.trainer.max_steps)
    optim = from_config(OptimSettings, recipe, "stage")
    module = TeacherPretrainModule(teacher, optim, max_steps, loss_token_chunk=speed.loss_token_chunk)
    trainer, logger, ckpt_path = build_trainer(
        cfg, run, "sft_teacher", module, max_steps, recipe.grad_clip, recipe.val_every
    )
    params = teacher.num_parameters()
    console.print(f"sft_teacher: {cfg.model.name}, all {params:,} parameters train")
    before, after = fit_and_validate(trainer, module, datamodule, ckpt_path)
    teacher_dir = save_trained(trainer, teacher, tokenizer, run.output_dir / "teacher") if recipe.save else None
    return {
        "params/total": params,
        "params/trainable": params,
        "teacher_ppl_before": metric(before, "val/teacher_ppl"),
        "teacher_ppl": float(after["val/teacher_ppl"]),
        "train_seq_len": int(recipe.seq_len),
        "tokens_seen": tokens_seen(trainer),
        "teacher_dir": None if teacher_dir is None else str(teacher_dir),
        "wandb_dir": finish_logger(logger),
    }
