"""Direct preference optimisation (DPO) and IPO on sequence log-probs."""

from __future__ import annotations


import torch.nn.functional as F
from torch import Tensor

from .common import shape_of


DPO_LOSS_TYPES = ("sigmoid", "ipo")


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    loss_type: str = "sigmoid",
) -> tuple[Tensor, Tensor, Tensor]:
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
        raise ValueError(
            "dpo_loss needs four non-empty log-prob tensors of one shape (B,), got "
            + ", ".join(str(shape_of(x)) for x in inputs)
        )
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; choose one of {', '.join(DPO_LOSS_TYPES)}")
    if not beta > 0:
        raise ValueError(f"DPO beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5 or (loss_type == "ipo" and label_smoothing):
        raise ValueError(
            f"label_smoothing must lie in [0, 0.5) and be 0 for 'ipo', got {label_smoothing} "
            f"with loss_type {loss_type!r}"
        )
    chosen_logratios = policy_chosen_logps - reference_chosen_logps.detach()  # (B,)
    rejected_logratios = policy_rejected_logps - reference_rejected_logps.detach()  # (B,)
    margin = chosen_logratios - rejected_logratios  # (B,)
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * margin) - label_smoothing * F.logsigmoid(-beta * margin)
    else:
        losses = (margin - 1 / (2 * beta)) ** 2
    return losses.mean(), beta * chosen_logratios.detach(), beta * rejected_logratios.detach()
