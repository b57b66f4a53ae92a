"""Distillation and preference losses: pure functions on logits, labels and masks (TRL style).

Modules: `divergences` (full-vocabulary KL, reverse KL, JSD and the `divergence` dispatcher), `chunked`
(vocabulary-chunked KL), `fused` (KL + CE fused with the LM heads over token chunks, from hidden states), `tokens` (next-token alignment, CE, sequence log-probs), `metrics` (top-1 agreement, KL
per position), `dpo` (DPO/IPO), `common` (what they share).

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

from .chunked import chunked_forward_kl
from .common import DEFAULT_VOCAB_CHUNK, IGNORE_INDEX
from .divergences import DIVERGENCES, divergence, forward_kl, generalized_jsd, reverse_kl
from .fused import FusedLossOutput, FusedLossWeights, fused_distill_loss
from .dpo import DPO_LOSS_TYPES, dpo_loss
from .metrics import token_kl, top1_agreement
from .tokens import cross_entropy, next_token_targets, sequence_logprobs, shift_for_next_token

__all__ = [
    "DEFAULT_VOCAB_CHUNK",
    "DIVERGENCES",
    "DPO_LOSS_TYPES",
    "FusedLossOutput",
    "FusedLossWeights",
    "IGNORE_INDEX",
    "chunked_forward_kl",
    "cross_entropy",
    "divergence",
    "dpo_loss",
    "forward_kl",
    "fused_distill_loss",
    "generalized_jsd",
    "next_token_targets",
    "reverse_kl",
    "sequence_logprobs",
    "shift_for_next_token",
    "token_kl",
    "top1_agreement",
]
