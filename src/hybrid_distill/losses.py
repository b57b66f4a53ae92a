"""Distillation and preference losses: pure functions on logits, labels and masks (TRL style).

Conventions shared by every function here:

* Logits are ``(..., V)``, usually ``(B, T, V)``. A ``mask`` has the leading shape ``(...)``,
  usually ``(B, T)``, bool or 0/1: nonzero marks the positions that count (response tokens),
  zero the prompt and padding. ``mask=None`` counts every position.
* Divergences take ``(student_logits, teacher_logits, mask)`` in TRL's order and return a float
  scalar: the SUM over counted positions divided by the NUMBER of counted positions (a per-token
  mean over the whole batch, not the reference code's ``batchmean``). No counted position gives 0
  with zero, finite gradients.
* Masked-out positions are dropped (gathered away) before any arithmetic, so nothing in their
  logits, not even inf or NaN, reaches the loss or its gradient. Counted logits must be finite
  (hide vocabulary entries with a large negative finite value, not ``-inf``).
* Arithmetic runs in float32 whatever the input dtype (float64 stays float64).
* ``temperature`` T divides both logits before the softmax. ``t2_scaling=True`` multiplies the
  loss by T**2 as in Hinton et al. (2015), which keeps gradient magnitudes comparable across T;
  the default (False) follows TRL's GKD, which does not rescale.
* Labels follow Hugging Face: token ids with ``-100`` (:data:`IGNORE_INDEX`) where no loss is
  taken. Functions taking ``labels`` expect them ALREADY ALIGNED with the logits (``labels[b, t]``
  is the target of ``logits[b, t]``); :func:`shift_for_next_token` gets there from labels aligned
  with the input ids, so every caller states the shift once, explicitly.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

IGNORE_INDEX = -100
DEFAULT_VOCAB_CHUNK = 8192
DPO_LOSS_TYPES = ("sigmoid", "ipo")

Index = tuple[Tensor, ...]  # one index tensor per leading dim, each (N,): the counted positions


# ---------------------------------------------------------------- shared helpers


def _shape(x: Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _check_pair(student_logits: Tensor, teacher_logits: Tensor) -> None:
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student_logits {_shape(student_logits)} and teacher_logits "
                         f"{_shape(teacher_logits)} must have the same shape (..., V)")
    if student_logits.dim() < 2 or student_logits.shape[-1] == 0:
        raise ValueError(f"logits must be (..., V) with a leading dim and V >= 1, got {_shape(student_logits)}")


def _counted_rows(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None) -> Index:
    """Validate a (student, teacher, mask) triple and return the indices of the counted positions."""
    _check_pair(student_logits, teacher_logits)
    leading = student_logits.shape[:-1]
    if mask is None:
        mask = torch.ones(leading, dtype=torch.bool, device=student_logits.device)
    elif mask.shape != leading:
        raise ValueError(f"mask {_shape(mask)} must have the logits' leading shape {tuple(leading)} "
                         f"(logits {_shape(student_logits)})")
    return mask.bool().nonzero(as_tuple=True)


def _upcast(x: Tensor) -> Tensor:
    """bf16/fp16 -> float32; float32 and float64 unchanged (no copy)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _scaled(logits: Tensor, temperature: float) -> Tensor:
    """Upcast (see _upcast) and divide by the temperature."""
    logits = _upcast(logits)
    return logits if temperature == 1.0 else logits / temperature


def _log_probs(logits: Tensor, temperature: float) -> Tensor:
    """(..., V) logits -> (..., V) float32 log-probabilities at temperature T."""
    return F.log_softmax(_scaled(logits, temperature), dim=-1)


def _kl_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) per row: (..., V), (..., V) log-probs -> (...)."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def _token_mean(values: Tensor) -> Tensor:
    """(N,) per-token values -> () mean; 0 when N == 0."""
    return values.sum() / max(values.numel(), 1)


def _t2(loss: Tensor, temperature: float, t2_scaling: bool) -> Tensor:
    return loss * temperature**2 if t2_scaling else loss


# ---------------------------------------------------------------- divergences (full vocabulary)


def _forward_kl_rows(log_ps: Tensor, log_pt: Tensor) -> Tensor:
    return _kl_rows(log_pt, log_ps)


def _reverse_kl_rows(log_ps: Tensor, log_pt: Tensor) -> Tensor:
    return _kl_rows(log_ps, log_pt)


def _jsd_rows(log_ps: Tensor, log_pt: Tensor, beta: float) -> Tensor:
    """beta * KL(p_t || m) + (1 - beta) * KL(p_s || m), m = beta * p_t + (1 - beta) * p_s; 0 < beta < 1."""
    log_m = torch.logaddexp(log_pt + math.log(beta), log_ps + math.log1p(-beta))  # (N, V)
    return beta * _kl_rows(log_pt, log_m) + (1 - beta) * _kl_rows(log_ps, log_m)


def _full_divergence(rows_fn: Callable[[Tensor, Tensor], Tensor], student_logits: Tensor,
                     teacher_logits: Tensor, mask: Tensor | None, temperature: float,
                     t2_scaling: bool) -> Tensor:
    """Per-token mean of rows_fn(log p_student, log p_teacher) over the counted positions."""
    _check_temperature(temperature)
    rows = _counted_rows(student_logits, teacher_logits, mask)
    log_ps = _log_probs(student_logits[rows], temperature)  # (N, V)
    log_pt = _log_probs(teacher_logits[rows], temperature)  # (N, V)
    return _t2(_token_mean(rows_fn(log_ps, log_pt)), temperature, t2_scaling)


def forward_kl(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None, *,
               temperature: float = 1.0, t2_scaling: bool = False) -> Tensor:
    """Forward KL(p_teacher || p_student) per counted token (mode-covering; the usual KD loss).

    student_logits, teacher_logits: (..., V); mask: (...) or None. Returns a float32 scalar.
    Materialises a few (N, V) float32 tensors (N = counted positions); for 128K vocabularies
    see :func:`chunked_forward_kl`, which gives the same value and gradients.
    """
    return _full_divergence(_forward_kl_rows, student_logits, teacher_logits, mask, temperature, t2_scaling)


def reverse_kl(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None, *,
               temperature: float = 1.0, t2_scaling: bool = False) -> Tensor:
    """Reverse KL(p_student || p_teacher) per counted token (mode-seeking). Shapes as :func:`forward_kl`."""
    return _full_divergence(_reverse_kl_rows, student_logits, teacher_logits, mask, temperature, t2_scaling)


def generalized_jsd(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None, *,
                    beta: float = 0.5, temperature: float = 1.0, t2_scaling: bool = False) -> Tensor:
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


# ---------------------------------------------------------------- vocabulary-chunked forward KL


def _column_chunks(vocab: int, chunk_size: int) -> Iterator[slice]:
    return (slice(start, min(start + chunk_size, vocab)) for start in range(0, vocab, chunk_size))


def _streaming_logsumexp(logits: Tensor, rows: Index, temperature: float, chunk_size: int) -> tuple[Tensor, Tensor]:
    """Online logsumexp of logits[rows] / T over vocabulary chunks: (..., V) -> (max, log sum exp(x - max)), (N,) each.

    Keeps a running max and a running sum of exp(x - max), rescaled when the max grows (the online
    softmax of Milakov & Gimelshein 2018). Returning the two parts separately lets callers form
    log p = (x - max) - log_sum exactly as F.log_softmax does, so results match it to float32 rounding.
    """
    running_max = running_sum = None
    for cols in _column_chunks(logits.shape[-1], chunk_size):
        x = _scaled(logits[rows + (cols,)], temperature)  # (N, C), a fresh copy (advanced indexing)
        chunk_max = x.amax(dim=-1)  # (N,)
        new_max = chunk_max if running_max is None else torch.maximum(running_max, chunk_max)
        chunk_sum = x.sub_(new_max[:, None]).exp_().sum(-1)  # (N,); in place: one (N, C) buffer per chunk
        running_sum = chunk_sum if running_sum is None else running_sum * (running_max - new_max).exp() + chunk_sum
        running_max = new_max
    return running_max, running_sum.log()


def _log_probs_chunk(logits: Tensor, rows: Index, cols: slice, stats: tuple[Tensor, Tensor],
                     temperature: float) -> Tensor:
    """(N, C) float32 log-probs of one vocabulary chunk, from the (max, log_sum) of _streaming_logsumexp."""
    row_max, log_sum = stats  # (N,), (N,)
    x = _scaled(logits[rows + (cols,)], temperature)  # (N, C), a fresh copy (advanced indexing)
    return x.sub_(row_max[:, None]).sub_(log_sum[:, None])


def _chunked_log_probs(student_logits: Tensor, teacher_logits: Tensor, rows: Index, stats_s: tuple[Tensor, Tensor],
                       stats_t: tuple[Tensor, Tensor], temperature: float,
                       chunk_size: int) -> Iterator[tuple[slice, Tensor, Tensor]]:
    """Yield (cols, log p_student (N, C), log p_teacher (N, C)) one vocabulary chunk at a time."""
    for cols in _column_chunks(student_logits.shape[-1], chunk_size):
        yield (cols, _log_probs_chunk(student_logits, rows, cols, stats_s, temperature),
               _log_probs_chunk(teacher_logits, rows, cols, stats_t, temperature))


class _ChunkedForwardKL(torch.autograd.Function):
    """Per-token KL(p_teacher || p_student) at the counted rows, (N,), never holding more than (N, C).

    Forward: pass 1 streams each side's logsumexp over vocabulary chunks (online max and rescaled
    sum); pass 2 sums p_t * (log p_t - log p_s) chunk by chunk, the same formula as the full
    KL, so values agree to float32 rounding. Only (N,) vectors are saved; the backward recomputes
    each chunk's probabilities and writes the analytic gradients straight into the output buffers:
        dKL/ds_v = (p_s,v - p_t,v) / T                        (student logits)
        dKL/dt_v = p_t,v * (log p_t,v - log p_s,v - KL) / T    (teacher logits, only if required)
    """

    @staticmethod
    def forward(ctx, student_logits: Tensor, teacher_logits: Tensor, rows: Index, temperature: float,
                chunk_size: int) -> Tensor:
        stats_s = _streaming_logsumexp(student_logits, rows, temperature, chunk_size)  # 2 x (N,)
        stats_t = _streaming_logsumexp(teacher_logits, rows, temperature, chunk_size)  # 2 x (N,)
        token_kl = torch.zeros_like(stats_s[0])  # (N,)
        for _, log_ps, log_pt in _chunked_log_probs(student_logits, teacher_logits, rows, stats_s, stats_t,
                                                    temperature, chunk_size):
            token_kl += _kl_rows(log_pt, log_ps)
        ctx.save_for_backward(student_logits, teacher_logits, *stats_s, *stats_t, token_kl, *rows)
        ctx.temperature, ctx.chunk_size = temperature, chunk_size
        return token_kl

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_token_kl: Tensor):
        student_logits, teacher_logits, max_s, log_sum_s, max_t, log_sum_t, token_kl, *rows = ctx.saved_tensors
        rows, stats_s, stats_t = tuple(rows), (max_s, log_sum_s), (max_t, log_sum_t)
        grad_s = torch.zeros_like(student_logits) if ctx.needs_input_grad[0] else None  # (..., V)
        grad_t = torch.zeros_like(teacher_logits) if ctx.needs_input_grad[1] else None  # (..., V)
        row_scale = (grad_token_kl / ctx.temperature)[:, None]  # (N, 1)
        for cols, log_ps, log_pt in _chunked_log_probs(student_logits, teacher_logits, rows, stats_s, stats_t,
                                                       ctx.temperature, ctx.chunk_size):
            p_t = log_pt.exp()  # (N, C)
            if grad_s is not None:
                grad_s[rows + (cols,)] = (row_scale * (log_ps.exp() - p_t)).to(grad_s.dtype)
            if grad_t is not None:
                grad_t[rows + (cols,)] = (row_scale * p_t * (log_pt - log_ps - token_kl[:, None])).to(grad_t.dtype)
        return grad_s, grad_t, None, None, None


def chunked_forward_kl(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None, *,
                       temperature: float = 1.0, t2_scaling: bool = False,
                       chunk_size: int = DEFAULT_VOCAB_CHUNK) -> Tensor:
    """:func:`forward_kl` (same value and gradients) without materialising (N, V) in float32.

    The vocabulary is processed ``chunk_size`` columns at a time by a custom autograd.Function
    (two streaming passes forward, one backward; see ``_ChunkedForwardKL``). Extra memory beyond the
    inputs is the gradient buffer autograd needs anyway (same shape and dtype as the logits) plus
    about five (N, chunk_size) float32 temporaries, instead of about five (N, V) float32 tensors
    (experiments/bench_chunked_kl.py, V = 128256: 3.7x less peak memory for float32 logits, 5.8x
    for bf16). bf16/fp16 logits are upcast to float32 one chunk at a time. Costs one more read of
    the logits than the full KL. Why vocabulary chunks and a hand-written backward rather than token
    chunks under torch.utils.checkpoint: recomputation under checkpointing still saves several
    (tokens per chunk, V) float32 tensors for autograd, whereas this Function saves only (N,)
    statistics and its temporaries shrink with chunk_size whatever V is.
    student_logits, teacher_logits: (..., V); mask: (...) or None. Returns a float32 scalar.
    """
    _check_temperature(temperature)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    rows = _counted_rows(student_logits, teacher_logits, mask)
    token_kl = _ChunkedForwardKL.apply(student_logits, teacher_logits, rows, temperature, chunk_size)  # (N,)
    return _t2(_token_mean(token_kl), temperature, t2_scaling)


# ---------------------------------------------------------------- metrics


def token_kl(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0) -> Tensor:
    """Forward KL(p_teacher || p_student) at every position: (..., V), (..., V) -> (...) float32.

    Unreduced and unmasked, for metrics such as KL by position; use :func:`forward_kl` as a loss.
    """
    _check_temperature(temperature)
    _check_pair(student_logits, teacher_logits)
    return _kl_rows(_log_probs(teacher_logits, temperature), _log_probs(student_logits, temperature))


@torch.no_grad()
def top1_agreement(teacher_logits: Tensor, student_logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """Fraction of counted positions where teacher and student argmax agree (symmetric in its two logits).

    teacher_logits, student_logits: (..., V); mask: (...) or None. Returns a float32 scalar in [0, 1],
    0 when no position counts.
    """
    rows = _counted_rows(student_logits, teacher_logits, mask)
    agree = teacher_logits.argmax(-1)[rows] == student_logits.argmax(-1)[rows]  # (N,)
    return _token_mean(agree.float())


# ---------------------------------------------------------------- dispatcher (the Hydra `loss` group)


DIVERGENCES: dict[str, Callable[..., Tensor]] = {
    "kl": forward_kl,
    "rkl": reverse_kl,
    "jsd": generalized_jsd,
    "kl_chunked": chunked_forward_kl,
}


def divergence(name: str, student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None, *,
               temperature: float = 1.0, t2_scaling: bool = False, jsd_beta: float = 0.5,
               vocab_chunk: int | None = None) -> Tensor:
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
            raise ValueError(f"vocab_chunk={vocab_chunk} is only supported by 'kl' and 'kl_chunked', "
                             f"not {name!r}; set it to null")
        name, options["chunk_size"] = "kl_chunked", vocab_chunk
    return DIVERGENCES[name](student_logits, teacher_logits, mask, **options)


# ---------------------------------------------------------------- cross-entropy and sequence log-probs


def shift_for_next_token(logits: Tensor, labels_or_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Pair the logits at position t with the label (or mask) at t + 1.

    logits: (B, T, V) from a causal LM; labels_or_mask: (B, T) aligned with the input ids
    (e.g. HF ``labels`` with -100 on prompt and padding, or a response mask).
    Returns (logits[:, :-1] (B, T-1, V), labels_or_mask[:, 1:] (B, T-1)), views, no copy. The shifted
    labels feed :func:`cross_entropy` / :func:`sequence_logprobs`, and ``shifted_labels != -100`` is
    the mask for the divergences (apply the same ``[:, :-1]`` to the teacher's logits).
    """
    if logits.dim() != 3 or labels_or_mask.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (B, T, V) and labels/mask (B, T), got logits {_shape(logits)} "
                         f"and labels/mask {_shape(labels_or_mask)}")
    return logits[:, :-1], labels_or_mask[:, 1:]


def next_token_targets(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Align logits (B, T, V) at position t with the label at t + 1.

    Returns (logits (B, T-1, V), targets (B, T-1), mask (B, T-1) bool of positions that count).
    """
    logits, targets = shift_for_next_token(logits, labels)
    return logits, targets, targets != IGNORE_INDEX


def _target_logprobs(logits: Tensor, labels: Tensor, ignore_index: int) -> tuple[Index, Tensor]:
    """Log-prob of each non-ignored label: (..., V), (...) -> (indices of those positions, (N,) float32)."""
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"labels {_shape(labels)} must have the logits' leading shape "
                         f"{tuple(logits.shape[:-1])} (logits {_shape(logits)}); shift first with "
                         f"shift_for_next_token if they are aligned with the input ids")
    rows = (labels != ignore_index).nonzero(as_tuple=True)
    return rows, -F.cross_entropy(_upcast(logits[rows]), labels[rows], reduction="none")


def cross_entropy(logits: Tensor, labels: Tensor, *, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Mean next-token cross-entropy over the labels that are not ``ignore_index``.

    logits: (..., V); labels: (...) ALREADY ALIGNED with the logits (see :func:`shift_for_next_token`).
    Returns a float32 scalar, 0 when every label is ignored.
    """
    _, token_logps = _target_logprobs(logits, labels, ignore_index)
    return -_token_mean(token_logps)


def sequence_logprobs(logits: Tensor, labels: Tensor, *, average: bool = False,
                      ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Log-probability of each sequence's labelled tokens: (B, T, V), (B, T) aligned -> (B,) float32.

    Sums log p(label) over the positions whose label is not ``ignore_index``; ``average=True`` divides
    by their count instead (as TRL does for IPO). A sequence with no labelled token gives 0.
    """
    if logits.dim() != 3:
        raise ValueError(f"sequence_logprobs expects logits (B, T, V), got {_shape(logits)}")
    rows, token_logps = _target_logprobs(logits, labels, ignore_index)
    batch = rows[0]  # (N,) sequence of each labelled token
    total = token_logps.new_zeros(logits.shape[0]).index_add(0, batch, token_logps)  # (B,)
    if not average:
        return total
    return total / torch.bincount(batch, minlength=logits.shape[0]).clamp(min=1)


# ---------------------------------------------------------------- DPO


def dpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, reference_chosen_logps: Tensor,
             reference_rejected_logps: Tensor, *, beta: float = 0.1, label_smoothing: float = 0.0,
             loss_type: str = "sigmoid") -> tuple[Tensor, Tensor, Tensor]:
    """Direct preference optimisation (Rafailov et al. 2023) on sequence log-probs, as TRL computes it.

    All four inputs are (B,) (see :func:`sequence_logprobs`); the reference log-probs are treated as
    constants (detached). With h = (pi_c - ref_c) - (pi_r - ref_r):
      "sigmoid": -(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)
                 (eps = label_smoothing, the conservative DPO of Mitchell 2023; 0 is plain DPO)
      "ipo":     (h - 1 / (2 * beta))**2 (Azar et al. 2023; TRL feeds it length-averaged log-probs,
                 i.e. sequence_logprobs(..., average=True); no label smoothing).
    Returns (loss: () mean over the batch (TRL returns the (B,) losses; we reduce),
             chosen_rewards: (B,) beta * (pi_c - ref_c), rejected_rewards: (B,) beta * (pi_r - ref_r)),
    the rewards detached, for logging (reward accuracy = mean(chosen > rejected)).
    """
    inputs = (policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    if len({x.shape for x in inputs}) != 1 or policy_chosen_logps.numel() == 0:
        raise ValueError("dpo_loss needs four non-empty log-prob tensors of one shape (B,), got "
                         + ", ".join(str(_shape(x)) for x in inputs))
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; choose one of {', '.join(DPO_LOSS_TYPES)}")
    if not beta > 0:
        raise ValueError(f"DPO beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5 or (loss_type == "ipo" and label_smoothing):
        raise ValueError(f"label_smoothing must lie in [0, 0.5) and be 0 for 'ipo', got {label_smoothing} "
                         f"with loss_type {loss_type!r}")
    chosen_logratios = policy_chosen_logps - reference_chosen_logps.detach()  # (B,)
    rejected_logratios = policy_rejected_logps - reference_rejected_logps.detach()  # (B,)
    margin = chosen_logratios - rejected_logratios  # (B,)
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * margin) - label_smoothing * F.logsigmoid(-beta * margin)
    else:
        losses = (margin - 1 / (2 * beta)) ** 2
    return losses.mean(), beta * chosen_logratios.detach(), beta * rejected_logratios.detach()
