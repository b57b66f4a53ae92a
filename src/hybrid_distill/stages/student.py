"""Building the hybrid student a stage trains, from the `student` group, `mamba_ratio` and `scan_backend`."""

from __future__ import annotations

from pathlib import Path

import torch

from omegaconf import DictConfig, OmegaConf
from transformers import LlamaForCausalLM

from ..console import console, say
from ..errors import UserError, reported_as_user_error
from ..export import load_saved_student, saved_student_config
from ..models import HybridForCausalLM, build_student, convert_student, param_counts, resolve_pattern, set_trainable
from ..models.allocation import MAMBA
from ..models.calibrate import calibrate_student
from ..models.config import LLAMA_SHAPE
from ..ops import resolve_backend
from .common import accelerator_device


def student_from_config(cfg: DictConfig, teacher: LlamaForCausalLM) -> HybridForCausalLM:
    """A fresh hybrid from the teacher, or (student.init_from) more layers converted in an earlier student."""
    s = cfg.student
    check_student_config(cfg, teacher.config.num_hidden_layers)
    ratio = None if s.pattern else float(cfg.mamba_ratio)
    # mixer, init, conv_init, options and trainable are checked where they are used; each error names its value
    with reported_as_user_error("student"):
        if s.init_from:
            student = load_student("student.init_from", Path(str(s.init_from)), cfg.scan_backend)
            check_same_architecture(student, teacher, f"student.init_from '{s.init_from}'")
            student = convert_student(student, mamba_ratio=ratio, pattern=s.pattern)
        else:
            student = build_student(
                teacher,
                mamba_ratio=ratio,
                pattern=s.pattern,
                mixer=s.mixer,
                init=s.init,
                scan_backend=cfg.scan_backend,
                conv_init=s.conv_init,
                **OmegaConf.to_container(s.options, resolve=True),
            )
        set_trainable(student, s.trainable)
    return student


def load_student(key: str, source: Path, scan_backend: str) -> HybridForCausalLM:
    """A saved student directory (or an export of one, see hybrid_distill.export) named by config key `key`; a
    missing, truncated or mismatched file is a UserError naming the key."""
    return load_saved_student(source, scan_backend, what=f"{key} '{source}'")


# the student's shapes that must equal its teacher's, as HybridConfig fields


def check_same_architecture(student: HybridForCausalLM, teacher: LlamaForCausalLM, what: str) -> None:
    """A student converted further and distilled from `teacher` must have been made from a teacher of its shape."""
    theirs = {**{k: getattr(teacher.config, k) for k in LLAMA_SHAPE}, "layers": teacher.config.num_hidden_layers}
    ours = {**{k: getattr(student.config, k) for k in LLAMA_SHAPE}, "layers": len(student.config.pattern)}
    differ = [f"{k}={ours[k]} but the teacher has {k}={theirs[k]}" for k in theirs if ours[k] != theirs[k]]
    if differ:
        raise UserError(f"{what} was made from another teacher architecture: {'; '.join(differ)}")


def check_student_config(cfg: DictConfig, num_layers: int) -> None:
    """Ratio, pattern and scan backend are checked before anything is built: one clear error each."""
    try:
        pattern = resolve_pattern(
            num_layers, None if cfg.student.pattern else float(cfg.mamba_ratio), cfg.student.pattern
        )
    except ValueError as err:
        raise UserError(f"mamba_ratio / student.pattern: {err}") from err
    if not cfg.student.pattern:
        warn_if_rounded(float(cfg.mamba_ratio), pattern)
    device = torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu")
    try:
        resolve_backend(cfg.scan_backend, device)
    except (RuntimeError, ValueError) as err:
        raise UserError(f"scan_backend={cfg.scan_backend}: {err}") from err


def warn_if_rounded(ratio: float, pattern: str) -> None:
    """A ratio that the model's depth cannot hold is rounded (models/allocation.py); say so, since e.g. 0.875 of 4
    layers silently becomes a pure Mamba model."""
    mamba = pattern.count(MAMBA)
    if abs(mamba / len(pattern) - ratio) > 1e-9:
        say(
            "[yellow]warning:[/]",
            f"mamba_ratio={ratio:g} of {len(pattern)} layers rounds to {mamba} Mamba layers "
            f"(ratio {mamba / len(pattern):g}): pattern {pattern}; student.pattern=... sets it exactly",
        )


def describe_student(student: HybridForCausalLM) -> dict:
    """Pattern and parameter counts, logged to W&B and printed in the summary."""
    return {"pattern": student.config.pattern, **{f"params/{k}": v for k, v in param_counts(student).items()}}


def new_mamba_layers(cfg: DictConfig, student: HybridForCausalLM) -> list[int]:
    """The Mamba layers this run created: all of them, or (student.init_from) those that were attention before."""
    if not cfg.student.init_from:
        return student.config.mamba_layers
    before = saved_student_config(Path(str(cfg.student.init_from))).pattern
    return [i for i in student.config.mamba_layers if before[i] != MAMBA]


def calibrate_from_config(cfg: DictConfig, student: HybridForCausalLM, teacher: LlamaForCausalLM, datamodule) -> dict:
    """student.calibration_batches > 0: fit the new Mamba layers' output scales (and open their gates) to the
    teacher's attention on that many training batches, once, before the first step (models/calibrate.py).
    Returns the summary that is logged: mean relative error of the new layers' outputs before and after."""
    n = cfg.student.get("calibration_batches", 0)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise UserError(f"student.calibration_batches must be an integer >= 0 (0 = no calibration), got {n!r}")
    layers = new_mamba_layers(cfg, student)
    if n == 0 or not layers:
        return {}
    datamodule.setup("fit")
    loader = iter(datamodule.train_dataloader())
    batches = []
    for _ in range(n):
        batch = next(loader, None)
        if batch is None:
            break
        batches.append((batch["input_ids"], batch["attention_mask"]))
    # on the GPU when the run trains on one: the teacher's forward over the calibration batches is the cost
    device = accelerator_device(cfg)
    homes = (next(teacher.parameters()).device, next(student.parameters()).device)
    if device is not None:
        teacher.to(device), student.to(device)
    try:
        report = calibrate_student(student, teacher, batches, layers=layers)
    finally:
        teacher.to(homes[0]), student.to(homes[1])

    def mean(key):
        return sum(r[key] for r in report.values()) / len(report)

    summary = {
        "calibration/batches": len(batches),
        "calibration/layers": len(layers),
        "calibration/rel_err_before": mean("rel_err_before"),
        "calibration/rel_err_after": mean("rel_err_after"),
    }
    console.print(
        f"calibration: {len(layers)} new Mamba layers on {len(batches)} training batches; output error "
        f"vs the teacher's attention (1 = zero output) {summary['calibration/rel_err_before']:.3g} -> "
        f"{summary['calibration/rel_err_after']:.3f}",
        soft_wrap=True,
    )
    return summary
