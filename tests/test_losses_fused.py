"""The row-chunked loss fused with the LM heads equals the plain path (full logits -> divergence + CE) in value and
gradients, for any chunk size, temperature, weights and mask."""

from __future__ import annotations

import pytest
import torch

from hybrid_distill import losses
from hybrid_distill.losses.fused import FusedLossWeights, fused_distill_loss

B, T, D, V = 2, 7, 16, 50


def _inputs(seed: int = 0, masked: bool = True):
    g = torch.Generator().manual_seed(seed)
    h_s = torch.randn(B, T, D, generator=g, requires_grad=True)
    w_s = (torch.randn(V, D, generator=g) / 2).requires_grad_()
    h_t, w_t = torch.randn(B, T, D, generator=g), torch.randn(V, D, generator=g) / 2
    targets = torch.randint(0, V, (B, T), generator=g)
    if masked:
        targets[0, :3] = losses.IGNORE_INDEX  # a prompt
        targets[1, -2:] = losses.IGNORE_INDEX  # padding
    return h_s, w_s, h_t, w_t, targets


def _plain(h_s, w_s, h_t, w_t, targets, weights: FusedLossWeights):
    z_s, mask = h_s @ w_s.T, targets != losses.IGNORE_INDEX  # (B, T, V), (B, T)
    loss = weights.ce_weight * losses.cross_entropy(z_s, targets)
    if h_t is None:
        return loss, None
    z_t = h_t @ w_t.T
    div = losses.divergence("kl", z_s, z_t, mask, temperature=weights.temperature, t2_scaling=weights.t2_scaling)  # (,)
    return loss + weights.divergence_weight * div, (div, losses.top1_agreement(z_s, z_t, mask))


def _fused(h_s, w_s, h_t, w_t, targets, weights, chunk):
    rows = (targets != losses.IGNORE_INDEX).nonzero(as_tuple=True)
    return fused_distill_loss(
        h_s[rows],
        w_s,
        None if h_t is None else h_t[rows],
        None if h_t is None else w_t,
        targets[rows],
        weights,
        token_chunk=chunk,
    )


def _grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


@pytest.mark.parametrize("chunk", [1, 3, 1000])
@pytest.mark.parametrize(
    "weights",
    [
        FusedLossWeights(divergence_weight=1.0, ce_weight=0.0),
        FusedLossWeights(divergence_weight=0.1, ce_weight=1.0),
        FusedLossWeights(divergence_weight=0.5, ce_weight=0.3, temperature=2.0, t2_scaling=True),
        FusedLossWeights(divergence_weight=1.0, ce_weight=0.0, temperature=0.5),
    ],
)
def test_fused_equals_plain_values_and_gradients(chunk, weights):
    h_s, w_s, h_t, w_t, targets = _inputs()
    expected, (div, agree) = _plain(h_s, w_s, h_t, w_t, targets, weights)
    out = _fused(h_s, w_s, h_t, w_t, targets, weights, chunk)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.divergence, div, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.top1_agree, agree)
    torch.testing.assert_close(out.ce, losses.cross_entropy(h_s @ w_s.T, targets), rtol=1e-5, atol=1e-6)
    for got, want in zip(_grads(out.loss, h_s, w_s), _grads(expected, h_s, w_s)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_ce_only_without_teacher_and_frozen_head():
    h_s, w_s, _, _, targets = _inputs(1)
    weights = FusedLossWeights(divergence_weight=0.0, ce_weight=1.0)
    expected, _ = _plain(h_s, w_s, None, None, targets, weights)
    w_frozen = w_s.detach()
    out = _fused(h_s, w_frozen, None, None, targets, weights, chunk=4)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    assert float(out.divergence) == 0.0 and float(out.top1_agree) == 0.0
    torch.testing.assert_close(_grads(out.loss, h_s)[0], _grads(expected, h_s)[0], rtol=1e-5, atol=1e-6)


def test_scaled_upstream_gradient_and_no_counted_rows():
    h_s, w_s, h_t, w_t, targets = _inputs(2)
    weights = FusedLossWeights(divergence_weight=1.0, ce_weight=1.0)
    expected, _ = _plain(h_s, w_s, h_t, w_t, targets, weights)
    out = _fused(h_s, w_s, h_t, w_t, targets, weights, chunk=5)
    torch.testing.assert_close(_grads(3 * out.loss, w_s)[0], _grads(3 * expected, w_s)[0], rtol=1e-5, atol=1e-6)
    empty = _fused(h_s, w_s, h_t, w_t, torch.full_like(targets, losses.IGNORE_INDEX), weights, chunk=5)
    assert float(empty.loss.detach()) == 0.0
    assert all(float(g.abs().sum()) == 0.0 for g in _grads(empty.loss, h_s, w_s))


def test_under_no_grad_gives_the_value_only():
    h_s, w_s, h_t, w_t, targets = _inputs(3)
    weights = FusedLossWeights(divergence_weight=1.0, ce_weight=0.5)
    expected, _ = _plain(h_s, w_s, h_t, w_t, targets, weights)
    with torch.no_grad():
        out = _fused(h_s, w_s, h_t, w_t, targets, weights, chunk=2)
    assert not out.loss.requires_grad
    torch.testing.assert_close(out.loss, expected.detach(), rtol=1e-5, atol=1e-6)


def test_bf16_autocast_matches_the_plain_path_under_autocast():
    """Under autocast both paths run the head matmuls in bf16 and the rest in float32: same value and gradients up
    to bf16 rounding of the gradient matmuls."""
    h_s, w_s, h_t, w_t, targets = _inputs(4)
    weights = FusedLossWeights(divergence_weight=1.0, ce_weight=1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, _ = _plain(h_s, w_s, h_t, w_t, targets, weights)
        out = _fused(h_s, w_s, h_t, w_t, targets, weights, chunk=3)
    torch.testing.assert_close(out.loss, expected.float(), rtol=1e-4, atol=1e-4)
    for got, want in zip(_grads(out.loss, h_s, w_s), _grads(expected, h_s, w_s)):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-3)


def test_bad_arguments_are_one_clear_error():
    h_s, w_s, h_t, w_t, targets = _inputs(5)
    weights = FusedLossWeights(divergence_weight=1.0, ce_weight=0.0)
    flat = h_s.reshape(-1, D)
    with pytest.raises(ValueError, match="token_chunk must be >= 1"):
        fused_distill_loss(flat, w_s, None, None, targets.reshape(-1).clamp(min=0), weights, token_chunk=0)
    with pytest.raises(ValueError, match="same number of rows"):
        fused_distill_loss(flat[:3], w_s, None, None, targets.reshape(-1).clamp(min=0), weights, token_chunk=2)
    with pytest.raises(ValueError, match="give both or neither"):
        fused_distill_loss(flat, w_s, flat, None, targets.reshape(-1).clamp(min=0), weights, token_chunk=2)
