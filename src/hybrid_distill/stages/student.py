"""Building the hybrid student a stage trains, from the `student` group, `mamba_ratio` and `scan_backend`."""

from __future__ import annotations

from pathlib import Path

import torch

from omegaconf import DictConfig, OmegaConf
from transformers import LlamaForCausalLM

from ..errors import UserError
from ..models import HybridForCausalLM, build_student, convert_student, param_counts, resolve_pattern, set_trainable
from ..ops import resolve_backend


def student_from_config(cfg: DictConfig, teacher: LlamaForCausalLM) -> HybridForCausalLM:
    """A fresh hybrid from the teacher, or (student.init_from) more layers converted in an earlier student."""
    s = cfg.student
    ratio = None if s.pattern else float(cfg.mamba_ratio)
    check_student_config(cfg, teacher.config.num_hidden_layers)
    if s.init_from:
        source = Path(str(s.init_from))
        if not (source / "config.json").is_file():
            raise UserError(f"student.init_from '{source}' is not a saved student (no config.json)")
        student = HybridForCausalLM.from_pretrained(str(source), scan_backend=cfg.scan_backend.name)
        student = convert_student(student, mamba_ratio=ratio, pattern=s.pattern)
    else:
        student = build_student(
            teacher, mamba_ratio=ratio, pattern=s.pattern, mixer=s.mixer, init=s.init,
            scan_backend=cfg.scan_backend.name, conv_init=s.conv_init,
            **OmegaConf.to_container(s.options, resolve=True),
        )
    set_trainable(student, s.trainable)
    return student


def check_student_config(cfg: DictConfig, num_layers: int) -> None:
    """Ratio, pattern and scan backend are checked before anything is built: one clear error each."""
    try:
        resolve_pattern(num_layers, None if cfg.student.pattern else float(cfg.mamba_ratio), cfg.student.pattern)
    except ValueError as err:
        raise UserError(f"mamba_ratio / student.pattern: {err}") from err
    device = torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu")
    try:
        resolve_backend(cfg.scan_backend.name, device)
    except (RuntimeError, ValueError) as err:
        raise UserError(f"scan_backend={cfg.scan_backend.name}: {err}") from err


def describe_student(student: HybridForCausalLM) -> dict:
    """Pattern and parameter counts, logged to W&B and printed in the summary."""
    return {"pattern": student.config.pattern, **{f"params/{k}": v for k, v in param_counts(student).items()}}
