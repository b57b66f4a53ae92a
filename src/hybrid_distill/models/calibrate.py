"""Calibrated start: fit each new Mamba mixer's output to the attention layer it replaces, on the teacher's own
hidden states, by least squares, before the first training step (done once).

Why: an attention-initialised mixer computes unnormalised linear attention, whose output on a real model is orders
of magnitude larger than the softmax attention it replaces (and the gated RMSNorm fixes every head's RMS to 1 where
attention heads have small, head-specific scales). Copying W_O as is therefore adds a huge, wrong vector to the
residual stream in every replaced layer. Per layer we

1. open the gate (only if the mixer has one): every z row of the mixer is the same direction u, the mean of the
   layer's calibration inputs, so silu(z) is one positive scalar per token instead of a random per-channel mask
   (the gated RMSNorm divides that scalar out again);
2. fit one scale per out_proj column (channel of the mixer output) so that out_proj(features) best matches the
   teacher attention's output: ordinary least squares with a small ridge. Scale 0 is allowed, so on the
   calibration data no layer can be worse than a mixer that adds nothing (the zeroed-output baseline).

Only values of existing parameters change (z rows of in_proj, out_proj columns): the architecture is untouched.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .allocation import MAMBA
from .mamba_base import MambaMixerBase

# the gate's logit at the median calibration token: silu(4) = 3.93, i.e. the gate is open (sigmoid 0.98)
OPEN_GATE_LOGIT = 4.0


@torch.no_grad()
def capture_attention_io(
    teacher: nn.Module, batches: Iterable[torch.Tensor], layers: list[int]
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Run the teacher (a HF Llama, or a student whose `layers` are attention) on `batches` of token ids (B, T) and
    return, per layer, the attention's input (N, T, d) and output (N, T, d), batches concatenated."""
    blocks = teacher.model.layers if hasattr(teacher, "model") else teacher.layers
    seen: dict[int, tuple[list, list]] = {i: ([], []) for i in layers}
    hooks = []
    for i in layers:
        attention = getattr(blocks[i], "self_attn", None) or blocks[i].mixer

        def hook(module, args, kwargs, output, i=i):
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            seen[i][0].append(hidden.float())
            seen[i][1].append((output[0] if isinstance(output, tuple) else output).float())

        hooks.append(attention.register_forward_hook(hook, with_kwargs=True))
    try:
        for ids in batches:
            teacher(input_ids=ids)
    finally:
        for h in hooks:
            h.remove()
    return {i: (torch.cat(seen[i][0]), torch.cat(seen[i][1])) for i in layers}


@torch.no_grad()
def open_gate(mixer: MambaMixerBase, inputs: torch.Tensor) -> float:
    """Make every z row the mean input direction, scaled so the median token's gate logit is OPEN_GATE_LOGIT.
    Returns the fraction of calibration tokens whose gate is open (logit > 0)."""
    flat = inputs.reshape(-1, inputs.shape[-1])  # (N*T, d)
    u = flat.mean(0)
    u = u / u.norm().clamp_min(1e-12)
    proj = flat @ u  # (N*T,)
    median = proj.median().clamp_min(1e-6)
    rows = mixer.in_proj_rows("z")
    mixer.in_proj.weight[rows] = (OPEN_GATE_LOGIT / median * u).to(mixer.in_proj.weight.dtype)
    if mixer.in_proj.bias is not None:
        mixer.in_proj.bias[rows] = 0.0
    return float((proj > 0).float().mean())


@torch.no_grad()
def mixer_features(mixer: MambaMixerBase, inputs: torch.Tensor) -> torch.Tensor:
    """What out_proj reads when the mixer runs on `inputs` (N, T, d): (N*T, H*P)."""
    got = []
    hook = mixer.out_proj.register_forward_pre_hook(lambda module, args: got.append(args[0].float()))
    try:
        mixer(inputs.to(mixer.out_proj.weight.dtype))
    finally:
        hook.remove()
    return got[0].reshape(-1, got[0].shape[-1])


def fit_channel_scales(
    features: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, ridge: float = 1e-4
) -> torch.Tensor:
    """s (k,) minimising sum_t ||targets_t - weight @ (s * features_t)||^2 + ridge * mean(diag G) * ||s||^2.
    features (n, k), weight (d, k), targets (n, d). Normal equations: G = (W^T W) o (F^T F), r = sum_t f_t o W^T a_t."""
    F64, W64, A64 = features.double(), weight.double(), targets.double()
    gram = (W64.T @ W64) * (F64.T @ F64)  # (k, k)
    rhs = (F64 * (A64 @ W64)).sum(0)  # (k,)
    gram.diagonal().add_(ridge * gram.diagonal().mean().clamp_min(1e-30))
    return torch.linalg.solve(gram, rhs).to(weight.dtype)


def relative_error(pred: torch.Tensor, target: torch.Tensor) -> float:
    """||target - pred||^2 / ||target||^2: 1.0 is what a mixer that outputs zero scores."""
    return float((target - pred).pow(2).sum() / target.pow(2).sum().clamp_min(1e-30))


@torch.no_grad()
def calibrate_mixer(mixer: MambaMixerBase, inputs: torch.Tensor, targets: torch.Tensor,
                    ridge: float = 1e-4) -> dict[str, float]:
    """Open the gate and fit out_proj's column scales so that mixer(inputs) ~ targets (both (N, T, d)), in place."""
    out = mixer.out_proj
    flat_targets = targets.reshape(-1, targets.shape[-1])  # (N*T, d)
    if out.bias is not None:
        flat_targets = flat_targets - out.bias.float()
    before = relative_error(mixer_features(mixer, inputs) @ out.weight.float().T, flat_targets)
    report = {"rel_err_before": before}
    if mixer.config.gate:
        report["gate_open_fraction"] = open_gate(mixer, inputs)
    features = mixer_features(mixer, inputs)  # (N*T, H*P)
    scales = fit_channel_scales(features, out.weight.float(), flat_targets, ridge)
    out.weight.mul_(scales.to(out.weight.dtype))
    report["rel_err_after"] = relative_error(features @ out.weight.float().T, flat_targets)
    return report


@torch.no_grad()
def calibrate_student(student: nn.Module, teacher: nn.Module, batches: Iterable[torch.Tensor],
                      layers: list[int] | None = None, ridge: float = 1e-4) -> dict[int, dict[str, float]]:
    """Calibrate the student's Mamba mixers (`layers`, default all) against the teacher's attention at the same
    depth, on the teacher's hidden states for `batches` of token ids (B, T). Returns a report per layer:
    rel_err_before / rel_err_after (1.0 = a mixer that outputs zero) and gate_open_fraction."""
    layers = student.config.mamba_layers if layers is None else layers
    bad = [i for i in layers if student.layers[i].kind != MAMBA]
    if bad:
        raise ValueError(f"calibrate_student: layer(s) {bad} of the student are not Mamba layers")
    if not layers:
        return {}
    was_training = student.training
    student.eval()
    io = capture_attention_io(teacher, batches, layers)
    report = {i: calibrate_mixer(student.layers[i].mixer, *io[i], ridge=ridge) for i in layers}
    student.train(was_training)
    return report
