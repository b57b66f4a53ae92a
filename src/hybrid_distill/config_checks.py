"""Numbers a run's config must hold, checked before anything is loaded or built: `stage.lr=abc` or
`trainer.max_steps=-5` is one line naming the key, not a traceback minutes later (or a silently odd run)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from .errors import UserError

# key -> (kind, lower bound, bound allowed, null allowed); keys a config does not have are not checked
NUMBERS: dict[str, tuple[type, float, bool, bool]] = {
    "seed": (int, 0, True, False),
    "mamba_ratio": (float, 0, True, False),
    "trainer.max_steps": (int, 0, True, False),
    "stage.lr": (float, 0, False, False),
    "stage.batch_size": (int, 1, True, False),
    "stage.seq_len": (int, 1, True, False),
    "stage.warmup_steps": (int, 0, True, False),
    "stage.val_every": (int, 1, True, False),
    "stage.grad_clip": (float, 0, True, True),
    "stage.max_new_tokens": (int, 1, True, False),
    "stage.target_params": (int, 1, True, False),
    "stage.hidden_size": (int, 1, True, False),
    "stage.num_layers": (int, 1, True, False),
    "stage.head_dim": (int, 1, True, False),
    "stage.mamba1_head_dim": (int, 1, True, False),
    "stage.vocab_size": (int, 1, True, False),
    "stage.max_documents": (int, 1, True, False),
    "loss.temperature": (float, 0, False, False),
    "loss.divergence_weight": (float, 0, True, False),
    "loss.ce_weight": (float, 0, True, False),
    "loss.dpo_beta": (float, 0, False, False),
    "model.recipe.pretrain_teacher.lr": (float, 0, False, False),
    "model.recipe.pretrain_teacher.batch_size": (int, 1, True, False),
    "model.recipe.pretrain_teacher.seq_len": (int, 1, True, False),
    "model.recipe.pretrain_teacher.max_steps": (int, 0, True, False),
}


def _problem(value: Any, kind: type, low: float, inclusive: bool, nullable: bool) -> str | None:
    if value is None:
        return None if nullable else "is required"
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind is int and not is_int:
        return "must be an integer"
    if kind is float and not (is_int or isinstance(value, float)):
        return "must be a number"
    if value < low or (value == low and not inclusive):
        return f"must be {'>=' if inclusive else '>'} {low:g}"
    return None


_ABSENT = object()


def check_numbers(cfg: DictConfig) -> None:
    """Every key of NUMBERS that `cfg` holds must be a number of its kind within its bound (one UserError naming all
    that are not)."""
    wrong = []
    for key, spec in NUMBERS.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:
            continue
        problem = _problem(value, *spec)
        if problem:
            wrong.append(f"{key}={value!r} {problem}")
    if wrong:
        raise UserError("; ".join(wrong))
