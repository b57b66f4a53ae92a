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
from .mixers.mamba_base import MambaMixerBase

# the gate's logit at the median calibration token: silu(4) = 3.93, i.e. the gate is open (sigmoid 0.98)
OPEN_GATE_LOGIT = 4.0


Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # ids (B, T), or (ids, attention_mask) with right padding


def split_batch(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, T), mask (B, T) bool): the tokens that count (padding does not)."""
    ids, mask = batch if isinstance(batch, tuple) else (batch, None)
    return ids, (torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool())


@torch.no_grad()
def capture_attention_io(
    teacher: nn.Module, batches: Iterable[Batch], layers: list[int]
) -> tuple[dict[int, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Run the teacher (a HF Llama) on `batches` and return, per layer, the attention's input and output
    (N, T, d) each, on the CPU, batches concatenated (T = the longest batch; shorter ones are zero-padded), and
    the mask (N, T) of real tokens."""
    blocks = teacher.model.layers
    seen: dict[int, tuple[list, list]] = {i: ([], []) for i in layers}
    hooks = []
    for i in layers:

        def hook(module, args, kwargs, output, i=i):
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            seen[i][0].append(hidden.float().cpu())
            seen[i][1].append((output[0] if isinstance(output, tuple) else output).float().cpu())

        hooks.append(blocks[i].self_attn.register_forward_hook(hook, with_kwargs=True))
    masks = []
    try:
        for batch in batches:
            ids, mask = split_batch(batch)
            teacher(input_ids=ids.to(teacher.device))
            masks.append(mask.cpu())
    finally:
        for h in hooks:
            h.remove()
    if not masks:
        raise ValueError("calibration needs at least one batch of token ids")
    T = max(m.shape[1] for m in masks)

    def pad(ts):
        return torch.cat([torch.nn.functional.pad(t, (0, 0, 0, T - t.shape[1])) for t in ts])

    mask = torch.cat([torch.nn.functional.pad(m, (0, T - m.shape[1])) for m in masks])
    return {i: (pad(seen[i][0]), pad(seen[i][1])) for i in layers}, mask


@torch.no_grad()
def open_gate(mixer: MambaMixerBase, flat: torch.Tensor) -> float:
    """Make every z row the mean direction of the mixer's inputs `flat` (n, d), scaled so that the median token's
    gate logit is OPEN_GATE_LOGIT. Returns the fraction of those tokens whose gate is open (logit > 0)."""
    u = flat.mean(0)
    u = u / u.norm().clamp_min(1e-12)
    proj = flat @ u  # (N*T,)
    median = proj.median().clamp_min(1e-6)
    rows = mixer.in_proj_rows("z")
    w = mixer.in_proj.weight
    w[rows] = (OPEN_GATE_LOGIT / median * u).to(w.device, w.dtype)
    if mixer.in_proj.bias is not None:
        mixer.in_proj.bias[rows] = 0.0
    return float((proj > 0).float().mean())


@torch.no_grad()
def mixer_features(mixer: MambaMixerBase, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What out_proj reads when the mixer runs on `inputs` (N, T, d), at the real tokens of `mask` (N, T): (n, H*P)."""
    got = []
    hook = mixer.out_proj.register_forward_pre_hook(lambda module, args: got.append(args[0].float()))
    weight = mixer.out_proj.weight
    try:
        for rows in torch.arange(inputs.shape[0]).split(8):  # a few sequences at a time: bounded memory
            mixer(inputs[rows].to(weight.device, weight.dtype))
    finally:
        hook.remove()
    return torch.cat(got).cpu()[mask]


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
def calibrate_mixer(
    mixer: MambaMixerBase, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, ridge: float = 1e-4
) -> dict[str, float]:
    """Open the gate and fit out_proj's column scales so that mixer(inputs) ~ targets (both (N, T, d)) at the real
    tokens of `mask` (N, T), in place."""
    out = mixer.out_proj
    weight = out.weight.detach().float().cpu().clone()  # (d, H*P), a copy: out.weight is rescaled below
    flat_targets = targets[mask]  # (n, d)
    if out.bias is not None:
        flat_targets = flat_targets - out.bias.float().cpu()
    report = {"rel_err_before": relative_error(mixer_features(mixer, inputs, mask) @ weight.T, flat_targets)}
    if mixer.config.options.gate:
        report["gate_open_fraction"] = open_gate(mixer, inputs[mask])
    features = mixer_features(mixer, inputs, mask)  # (n, H*P)
    scales = fit_channel_scales(features, weight, flat_targets, ridge)
    out.weight.mul_(scales.to(out.weight.device, out.weight.dtype))
    report["rel_err_after"] = relative_error(features @ (weight * scales).T, flat_targets)
    return report


@torch.no_grad()
def calibrate_student(
    student: nn.Module,
    teacher: nn.Module,
    batches: Iterable[Batch],
    layers: list[int] | None = None,
    ridge: float = 1e-4,
) -> dict[int, dict[str, float]]:
    """Calibrate the student's Mamba mixers (`layers`, default all) against the teacher's attention at the same
    depth, on the teacher's hidden states for `batches` (token ids (B, T), or (ids, attention_mask)). Returns a report per layer:
    rel_err_before / rel_err_after (1.0 = a mixer that outputs zero) and gate_open_fraction."""
    layers = student.config.mamba_layers if layers is None else layers
    bad = [i for i in layers if student.layers[i].kind != MAMBA]
    if bad:
        raise ValueError(f"calibrate_student: layer(s) {bad} of the student are not Mamba layers")
    if layers and not isinstance(student.layers[layers[0]].mixer, MambaMixerBase):
        raise ValueError(
            f"calibrate_student fits Mamba mixers (in_proj z rows, out_proj columns), not mixer "
            f"{student.config.mixer!r}; calibrate with 0 batches (student.calibration_batches=0)"
        )
    if not layers:
        return {}
    was_training = student.training
    student.eval()
    io, mask = capture_attention_io(teacher, batches, layers)
    report = {i: calibrate_mixer(student.layers[i].mixer, *io.pop(i), mask, ridge=ridge) for i in layers}
    student.train(was_training)
    return report
