"""Divergences between student and teacher over the full vocabulary (forward KL, reverse KL, generalized JSD),
and `divergence`, which picks one by its config name (loss.divergence)."""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch
from torch import Tensor

from .common import check_temperature, counted_rows, kl_rows, log_probs, t2, token_mean
from .chunked import chunked_forward_kl


def _forward_kl_rows(log_ps: Tensor, log_pt: Tensor) -> Tensor:
    return kl_rows(log_pt, log_ps)


def _reverse_kl_rows(log_ps: Tensor, log_pt: Tensor) -> Tensor:
    return kl_rows(log_ps, log_pt)


def _jsd_rows(log_ps: Tensor, log_pt: Tensor, beta: float) -> Tensor:
    """beta * KL(p_t || m) + (1 - beta) * KL(p_s || m), m = beta * p_t + (1 - beta) * p_s; 0 < beta < 1."""
    log_m = torch.logaddexp(log_pt + math.log(beta), log_ps + math.log1p(-beta))  # (N, V)
    return beta * kl_rows(log_pt, log_m) + (1 - beta) * kl_rows(log_ps, log_m)


def _full_divergence(
    rows_fn: Callable[[Tensor, Tensor], Tensor],
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None,
    temperature: float,
    t2_scaling: bool,
) -> Tensor:
    """Per-token mean of rows_fn(log p_student, log p_teacher) over the counted positions."""
    check_temperature(temperature)
    rows = counted_rows(student_logits, teacher_logits, mask)
    log_ps = log_probs(student_logits[rows], temperature)  # (N, V)
    log_pt = log_probs(teacher_logits[rows], temperature)  # (N, V)
    return t2(token_mean(rows_fn(log_ps, log_pt)), temperature, t2_scaling)


def forward_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
    t2_scaling: bool = False,
) -> Tensor:
    """Forward KL(p_teacher || p_student) per counted token (mode-covering; the usual KD loss).

    student_logits, teacher_logits: (..., V); mask: (...) or None. Returns a float32 scalar.
    Materialises a few (N, V) float32 tensors (N = counted positions); for 128K vocabularies
    see :func:`chunked_forward_kl`, which gives the same value and gradients.
    """
    return _full_divergence(_forward_kl_rows, student_logits, teacher_logits, mask, temperature, t2_scaling)


def reverse_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
    t2_scaling: bool = False,
) -> Tensor:
    """Reverse KL(p_student || p_teacher) per counted token (mode-seeking). Shapes as :func:`forward_kl`."""
    return _full_divergence(_reverse_kl_rows, student_logits, teacher_logits, mask, temperature, t2_scaling)


def generalized_jsd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    beta: float = 0.5,
    temperature: float = 1.0,
    t2_scaling: bool = False,
) -> Tensor:
    """Generalized Jensen-Shannon divergence of GKD (Agarwal et al. 2024), TRL's convention.

    With m = beta * p_teacher + (1 - beta) * p_student:
    JSD_beta = beta * KL(p_teacher || m) + (1 - beta) * KL(p_student || m), for 0 < beta < 1.
    The endpoints are defined as TRL's ``generalized_jsd_loss`` defines them:
    beta = 0 -> forward KL(p_teacher || p_student), beta = 1 -> reverse KL(p_student || p_teacher).
    (The formula itself tends to 0 at both ends; JSD_beta / beta -> forward KL as beta -> 0 and
    JSD_beta / (1 - beta) -> reverse KL as beta -> 1, which is why the endpoints are "KL-like".)
    beta = 0.5 is the symmetric JSD, bounded by log 2. Shapes as :func:`forward_kl`.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"jsd beta must lie in [0, 1], got {beta}")
    rows_fn = _forward_kl_rows if beta == 0 else _reverse_kl_rows if beta == 1 else partial(_jsd_rows, beta=beta)
    return _full_divergence(rows_fn, student_logits, teacher_logits, mask, temperature, t2_scaling)


# ---------------------------------------------------------------- dispatcher (the Hydra `loss` group)


DIVERGENCES: dict[str, Callable[..., Tensor]] = {
    "kl": forward_kl,
    "rkl": reverse_kl,
    "jsd": generalized_jsd,
    "kl_chunked": chunked_forward_kl,
}


def divergence(
    name: str,
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
    t2_scaling: bool = False,
    jsd_beta: float = 0.5,
    vocab_chunk: int | None = None,
) -> Tensor:
    """Divergence chosen by its config name: "kl" | "rkl" | "jsd" | "kl_chunked" (see DIVERGENCES).

    jsd_beta: only "jsd" uses it (other names ignore it, so one config schema serves all).
    vocab_chunk: a chunk size makes "kl" use :func:`chunked_forward_kl` (same value, less memory);
    "kl_chunked" uses it (default DEFAULT_VOCAB_CHUNK); "rkl" and "jsd" have no chunked form and
    reject it. Shapes and return value as :func:`forward_kl`.
    """
    if name not in DIVERGENCES:
        raise ValueError(f"unknown divergence {name!r}; choose one of {', '.join(map(repr, DIVERGENCES))}")
    options = dict(temperature=temperature, t2_scaling=t2_scaling)
    if name == "jsd":
        options["beta"] = jsd_beta
    if vocab_chunk is not None:
        if name not in ("kl", "kl_chunked"):
            raise ValueError(
                f"vocab_chunk={vocab_chunk} is only supported by 'kl' and 'kl_chunked', not {name!r}; set it to null"
            )
        name, options["chunk_size"] = "kl_chunked", vocab_chunk
    return DIVERGENCES[name](student_logits, teacher_logits, mask, **options)
