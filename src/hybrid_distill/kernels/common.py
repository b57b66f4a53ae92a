"""Small Triton helpers shared by the SSD kernels."""

from __future__ import annotations

import os

import triton
import triton.language as tl

# Triton decides at import time whether @triton.jit kernels run in its CPU interpreter
INTERPRETED = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") == "1")


@triton.jit
def mma(a, b, PRECISION: tl.constexpr):
    """a @ b with fp32 accumulation (operands bf16, or fp32 with PRECISION "ieee" for exact fp32).

    The interpreter (Triton 3.9) multiplies bf16 operands wrongly, so there they are widened to fp32 first:
    products of bf16 values are exact in fp32, so the result is what the GPU's bf16 dot computes.
    """
    if INTERPRETED:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def chunk_dt(dt_in, dt_bias_ptr, h, mask_t, HAS_DT_BIAS: tl.constexpr, DT_SOFTPLUS: tl.constexpr):
    """dt of one chunk for head h from its loaded input values, after bias and softplus; 0 past the sequence end.

    Returns (dt, raw) with raw = dt input + bias, the softplus argument the backward pass needs.
    """
    raw = dt_in.to(tl.float32)  # (Q,)
    if HAS_DT_BIAS:
        raw += tl.load(dt_bias_ptr + h).to(tl.float32)
    dt = raw
    if DT_SOFTPLUS:
        # softplus = log1p(exp(v)), with log1p(u) = log(w) * u / (w - 1), w = 1 + u (Kahan): exact for tiny u,
        # where log(1 + u) would round; past v = 20, softplus(v) == v to fp32 precision
        u = tl.exp(tl.minimum(raw, 20.0))
        w = 1.0 + u
        log1p = tl.where(w == 1.0, u, tl.log(w) * u / (w - 1.0))
        dt = tl.where(raw > 20.0, raw, log1p)
    # zeroing dt past the end makes those steps a no-op: no decay (exp(0) = 1) and no input
    return tl.where(mask_t, dt, 0.0), raw


@triton.jit
def chunk_decay(
    dt_ptr,
    dt_bias_ptr,
    A_ptr,
    h,
    k,
    seqlen,
    stride_dt_l,
    CHUNK: tl.constexpr,
    HAS_DT_BIAS: tl.constexpr,
    DT_SOFTPLUS: tl.constexpr,
):
    """Steps of chunk k for head h (dt_ptr at this batch and head) and their decays.

    Returns (offs_t, mask_t, dt, raw, cum, cum_end): positions (Q,), in-sequence mask, dt after bias and softplus
    (0 past the end), the softplus argument, cum = inclusive cumsum of dt * A inside the chunk, and its total.
    """
    offs_t = k * CHUNK + tl.arange(0, CHUNK)
    mask_t = offs_t < seqlen
    dt_in = tl.load(dt_ptr + offs_t * stride_dt_l, mask=mask_t, other=0.0)
    dt, raw = chunk_dt(dt_in, dt_bias_ptr, h, mask_t, HAS_DT_BIAS, DT_SOFTPLUS)
    dA = dt * tl.load(A_ptr + h).to(tl.float32)
    return offs_t, mask_t, dt, raw, tl.cumsum(dA, axis=0), tl.sum(dA, axis=0)
