"""Stage `scratch`: one architecture (transformer, hybrid, mamba2, mamba1; models/sizing.py) sized to
`stage.target_params`, trained from random weights with next-token cross-entropy on the `data` group, then saved as
a student directory that `python eval.py ckpt=<run dir>` evaluates (without a teacher)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from omegaconf import DictConfig

from ..console import console
from ..data.tokenizer import load_or_train_tokenizer
from ..errors import UserError
from ..lit.settings import OptimSettings, from_config
from ..lit.teacher_pretrain import TeacherPretrainModule
from ..lit.tokens import tokens_seen
from ..models import HybridForCausalLM
from ..models.sizing import Sized, describe, init_from_scratch, size_architecture
from ..ops import resolve_backend
from ..runtime import RunContext, build_trainer, finish_logger
from .common import fit_and_validate, metric, save_trained, seed_everything, stage_datamodule
from .student import describe_student


def sized_from_config(cfg: DictConfig) -> Sized:
    """The architecture `stage.arch` at `stage.target_params`; a bad choice is one UserError naming the key."""
    s = cfg.stage
    # Mamba-1's state is per channel (d_inner x N): it gets its own, smaller N (= its head_dim here)
    head_dim = int(s.mamba1_head_dim) if s.arch == "mamba1" else int(s.head_dim)
    try:
        return size_architecture(
            str(s.arch),
            int(s.target_params),
            int(s.hidden_size),
            int(s.num_layers),
            head_dim,
            int(s.vocab_size),
            mamba_ratio=float(cfg.mamba_ratio),
            scan_backend=str(cfg.scan_backend),
        )
    except ValueError as err:
        raise UserError(f"stage.arch={s.arch} (stage.target_params, hidden_size, num_layers, head_dim): {err}") from err


def run_scratch(cfg: DictConfig, run: RunContext) -> dict:
    sized = sized_from_config(cfg)
    try:
        resolve_backend(cfg.scan_backend, torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu"))
    except (RuntimeError, ValueError) as err:
        raise UserError(f"scan_backend={cfg.scan_backend}: {err}") from err
    tokenizer = load_or_train_tokenizer(Path(cfg.paths.cache_dir) / "tokenizers", int(cfg.stage.vocab_size))
    seed_everything(cfg.seed)
    model = init_from_scratch(HybridForCausalLM(sized.config))
    info = {"arch": str(cfg.stage.arch), **describe_student(model)}
    console.print(f"scratch: [bold]{cfg.stage.arch}[/] {describe(sized)}", soft_wrap=True)
    datamodule = stage_datamodule(cfg, tokenizer)
    console.print(
        f"data: {datamodule.text_rows:,} text blocks + {datamodule.recall_rows:,} recall rows of "
        f"{cfg.stage.seq_len} tokens"
    )
    max_steps = int(cfg.trainer.max_steps)
    module = TeacherPretrainModule(model, from_config(OptimSettings, cfg.stage, "stage"), max_steps, ppl_name="val/ppl")
    trainer, logger, ckpt_path = build_trainer(
        cfg, run, "scratch", module, max_steps, cfg.stage.grad_clip, cfg.stage.val_every
    )
    for one in logger or []:
        one.log_hyperparams(info)
    before, after = fit_and_validate(trainer, module, datamodule, ckpt_path)
    student_dir = save_trained(trainer, model, tokenizer, run.output_dir / "student")
    wandb_dir = finish_logger(logger)
    ppl = float(after["val/ppl"])
    return {
        **info,
        "target_params": int(cfg.stage.target_params),
        "ppl_before": metric(before, "val/ppl"),
        "ppl": ppl,
        "lm_loss": math.log(ppl),  # held-out cross-entropy per token (nats)
        "train_seq_len": int(cfg.stage.seq_len),
        "text_rows": datamodule.text_rows,
        "recall_rows": datamodule.recall_rows,
        "tokens_seen": tokens_seen(trainer),
        "student_dir": str(student_dir),
        "wandb_dir": wandb_dir,
    }
