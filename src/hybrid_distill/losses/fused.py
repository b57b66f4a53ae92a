"""The distillation loss fused with the LM heads, over chunks of tokens: divergence_weight * forward KL + ce_weight *
CE from the final hidden states, so that no (B, T, V) logits of student or teacher ever exist.

Why token (row) chunks with the gradient computed in the forward pass, rather than the other choices:

* The vocabulary-chunked KL (`chunked.py`) still needs both full (B, T, V) logits as inputs and reads them twice
  more; on the H200 it cost 21 % of the step's throughput. Row chunks instead apply each LM head to `token_chunk`
  rows at a time: the (rows, V) float32 logits of one chunk are the only large temporaries, whatever T is.
* The loss is a scalar that is only ever back-propagated once, so its gradient with respect to the student's logits
  is known during the forward pass (the Liger-Kernel "fused linear cross-entropy" idea):
      dL/dz_s = w_d * c / N * (softmax(z_s / T) - softmax(z_t / T)) / T + w_ce / N * (softmax(z_s) - onehot(y))
  (c = T**2 with t2_scaling, else 1; N counted tokens). Each chunk therefore costs exactly the matmuls of the plain
  path, no more: student head forward (z_s = h_s W_s^T), teacher head forward, dL/dh_s = g W_s and, when the head
  trains, dL/dW_s += g^T h_s. torch.utils.checkpoint over row chunks would run the student head forward twice
  (about 7 % more FLOPs per step for the Llama-3.2-1B pair with Mamba mixers training: its head is a fifth of the
  model) and save autograd's (rows, V) intermediates during the backward; recomputing in a custom backward would
  run both heads twice (about 13 % more).
  torch.compile of the plain loss cannot avoid materialising the full logits: they are the head's output, which
  autograd saves.
* What is kept between forward and backward is dL/dh_s, (N, d) in the hidden states' dtype (the size of one
  layer's activations), plus a float32 (V, d) gradient of the head only when the head trains; the backward only
  scales them by the incoming gradient.

Under autocast the matmuls run in its dtype, exactly as the plain path's heads do; softmax, KL and CE run in float32.
Only the forward KL has this form (its gradient is p_s - p_t); loss.divergence=rkl or jsd with loss.token_chunk is
refused where the settings are checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .common import check_temperature, shape_of


@dataclass(frozen=True)
class FusedLossWeights:
    """divergence_weight * KL(teacher || student) at `temperature` (times T**2 if t2_scaling) + ce_weight * CE."""

    divergence_weight: float
    ce_weight: float
    temperature: float = 1.0
    t2_scaling: bool = False


@dataclass
class FusedLossOutput:
    loss: Tensor  # () float32, differentiable: the weighted mix
    divergence: Tensor  # () float32 per-token forward KL (0 without a teacher), for logging
    ce: Tensor  # () float32 per-token CE, for logging
    top1_agree: Tensor  # () float32 fraction of rows where the argmaxes agree (0 without a teacher), for logging


def _chunk_terms(
    z_s: Tensor, z_t: Tensor | None, targets: Tensor, weights: FusedLossWeights, scale: float, with_grad: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """One row chunk: (sum of KL, sum of CE, agreeing rows, dL/dz_s (n, V) float32 or None) from float32 logits
    z_s, z_t (n, V) and targets (n,). `scale` = 1 / N, the per-token mean."""
    T = weights.temperature
    log_ps = F.log_softmax(z_s, dim=-1)  # (n, V) at temperature 1, for CE
    ce = -log_ps.gather(1, targets[:, None]).sum()
    grad = None
    if with_grad:
        grad = log_ps.exp().mul_(weights.ce_weight * scale)  # (n, V)
        grad[torch.arange(len(targets), device=grad.device), targets] -= weights.ce_weight * scale
    if z_t is None:
        return z_s.new_zeros(()), ce, z_s.new_zeros(()), grad
    log_ps_t = log_ps if T == 1.0 else F.log_softmax(z_s / T, dim=-1)  # (n, V)
    log_pt = F.log_softmax(z_t / T, dim=-1)  # (n, V)
    p_t = log_pt.exp()
    kl = (p_t * (log_pt - log_ps_t)).sum()
    agree = (z_s.argmax(-1) == z_t.argmax(-1)).sum()
    if with_grad:
        c = weights.divergence_weight * (T**2 if weights.t2_scaling else 1.0) * scale / T
        grad.add_(log_ps_t.exp().sub_(p_t), alpha=c)
    return kl, ce, agree, grad


class _FusedDistillLoss(torch.autograd.Function):
    """Loss and its gradients in one pass over row chunks (module docstring); backward scales the stored gradients."""

    @staticmethod
    def forward(ctx, h_s, w_s, h_t, w_t, targets, weights: FusedLossWeights, chunk: int, with_grad: bool):
        N = targets.shape[0]
        scale = 1.0 / max(N, 1)
        sums = torch.zeros(3, device=h_s.device)  # KL, CE, agreeing rows
        grad_h = torch.empty_like(h_s) if with_grad and ctx.needs_input_grad[0] else None  # (N, d)
        grad_w = torch.zeros_like(w_s, dtype=torch.float32) if with_grad and ctx.needs_input_grad[1] else None
        for start in range(0, N, chunk):
            rows = slice(start, min(start + chunk, N))
            z_s = F.linear(h_s[rows], w_s).float()  # (n, V)
            z_t = None if h_t is None else F.linear(h_t[rows], w_t).float()  # (n, V)
            kl, ce, agree, g = _chunk_terms(z_s, z_t, targets[rows], weights, scale, with_grad)
            sums += torch.stack([kl, ce, agree.float()])
            if grad_h is not None:
                grad_h[rows] = (g.to(w_s.dtype) @ w_s).to(h_s.dtype)  # (n, d), autocast's dtype if it is on
            if grad_w is not None:
                grad_w += (g.t().to(h_s.dtype) @ h_s[rows]).float()  # (V, d)
        kl, ce, agree = sums * scale
        divergence = kl * (weights.temperature**2 if weights.t2_scaling else 1.0)
        loss = weights.divergence_weight * divergence + weights.ce_weight * ce
        ctx.save_for_backward(grad_h, None if grad_w is None else grad_w.to(w_s.dtype))
        ctx.mark_non_differentiable(divergence, ce, agree)
        return loss, divergence, ce, agree

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, *_):
        grad_h, grad_w = ctx.saved_tensors
        scaled = [None if g is None else g * grad_loss.to(g.dtype) for g in (grad_h, grad_w)]
        return scaled[0], scaled[1], None, None, None, None, None, None


def fused_distill_loss(
    student_hidden: Tensor,
    student_head: Tensor,
    teacher_hidden: Tensor | None,
    teacher_head: Tensor | None,
    targets: Tensor,
    weights: FusedLossWeights,
    *,
    token_chunk: int,
) -> FusedLossOutput:
    """The distillation loss of :mod:`losses` (forward KL + CE, per counted token) from final hidden states.

    student_hidden, teacher_hidden: (N, d_s), (N, d_t) at the N counted positions (gather them first: the caller
    knows the shift and the mask); student_head, teacher_head: (V, d) LM-head weights; targets: (N,) next-token ids.
    teacher_hidden/teacher_head None: CE only. Same value and gradients as `divergence("kl", ...)` and
    `cross_entropy` on the full logits (tests/test_losses_fused.py), with at most (token_chunk, V) float32 logits
    alive at a time.
    """
    check_temperature(weights.temperature)
    if token_chunk < 1:
        raise ValueError(f"token_chunk must be >= 1, got {token_chunk}")
    if (teacher_hidden is None) != (teacher_head is None):
        raise ValueError("teacher_hidden and teacher_head go together: give both or neither")
    n = targets.shape[0]
    if student_hidden.shape[0] != n or (teacher_hidden is not None and teacher_hidden.shape[0] != n):
        raise ValueError(
            f"student_hidden {shape_of(student_hidden)}, teacher_hidden "
            f"{None if teacher_hidden is None else shape_of(teacher_hidden)} and targets {shape_of(targets)} "
            "must have the same number of rows"
        )
    with_grad = torch.is_grad_enabled() and (student_hidden.requires_grad or student_head.requires_grad)
    loss, kl, ce, agree = _FusedDistillLoss.apply(
        student_hidden, student_head, teacher_hidden, teacher_head, targets, weights, token_chunk, with_grad
    )
    return FusedLossOutput(loss=loss, divergence=kl, ce=ce, top1_agree=agree)
