"""Building the hybrid student a stage trains, from the `student` group, `mamba_ratio` and `scan_backend`."""

from __future__ import annotations

from pathlib import Path

import torch

from omegaconf import DictConfig, OmegaConf
from transformers import LlamaForCausalLM

from ..errors import UserError, reported_as_user_error
from ..export import load_saved_student
from ..models import HybridForCausalLM, build_student, convert_student, param_counts, resolve_pattern, set_trainable
from ..ops import resolve_backend


def student_from_config(cfg: DictConfig, teacher: LlamaForCausalLM) -> HybridForCausalLM:
    """A fresh hybrid from the teacher, or (student.init_from) more layers converted in an earlier student."""
    s = cfg.student
    check_student_config(cfg, teacher.config.num_hidden_layers)
    ratio = None if s.pattern else float(cfg.mamba_ratio)
    # mixer, init, conv_init, options and trainable are checked where they are used; each error names its value
    with reported_as_user_error("student"):
        if s.init_from:
            student = load_student("student.init_from", Path(str(s.init_from)), cfg.scan_backend.name)
            check_same_architecture(student, teacher, f"student.init_from '{s.init_from}'")
            student = convert_student(student, mamba_ratio=ratio, pattern=s.pattern)
        else:
            student = build_student(
                teacher, mamba_ratio=ratio, pattern=s.pattern, mixer=s.mixer, init=s.init,
                scan_backend=cfg.scan_backend.name, conv_init=s.conv_init,
                **OmegaConf.to_container(s.options, resolve=True),
            )
        set_trainable(student, s.trainable)
    return student


def load_student(key: str, source: Path, scan_backend: str) -> HybridForCausalLM:
    """A saved student directory (or an export of one, see hybrid_distill.export) named by config key `key`; a
    missing, truncated or mismatched file is a UserError naming the key."""
    return load_saved_student(source, scan_backend, what=f"{key} '{source}'")


# the student's shapes that must equal its teacher's, as HybridConfig fields
SHARED_SHAPE = ("vocab_size", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
                "head_dim")


def check_same_architecture(student: HybridForCausalLM, teacher: LlamaForCausalLM, what: str) -> None:
    """A student converted further and distilled from `teacher` must have been made from a teacher of its shape."""
    theirs = {**{k: getattr(teacher.config, k) for k in SHARED_SHAPE}, "layers": teacher.config.num_hidden_layers}
    ours = {**{k: getattr(student.config, k) for k in SHARED_SHAPE}, "layers": len(student.config.pattern)}
    differ = [f"{k}={ours[k]} but the teacher has {k}={theirs[k]}" for k in theirs if ours[k] != theirs[k]]
    if differ:
        raise UserError(f"{what} was made from another teacher architecture: {'; '.join(differ)}")


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
