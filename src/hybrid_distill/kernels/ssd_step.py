"""Decode-step Triton kernel of the SSD recurrence (one token, inference only).

One program owns one (batch, head, block of head dims):
    S' = exp(dt * A) * S + dt * x B^T        y = S' C + D * x
It reads the state once and writes the new one once: a memory-bound kernel.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import chunk_dt


@triton.jit
def ssd_step_kernel(
    state_ptr,
    x_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    dt_bias_ptr,  # inputs, contiguous
    y_ptr,
    new_state_ptr,  # outputs, contiguous; new_state may alias state (in-place update)
    # model sizes are compile-time constants: masks against them fold away when the blocks fit exactly
    nheads: tl.constexpr,
    headdim: tl.constexpr,
    dstate: tl.constexpr,
    ngroups_b: tl.constexpr,
    ngroups_c: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_D: tl.constexpr,
    D_PER_P: tl.constexpr,
    HAS_DT_BIAS: tl.constexpr,
    DT_SOFTPLUS: tl.constexpr,
):
    pid_p = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    b = pid_bh // nheads
    h = pid_bh % nheads
    gb = h // (nheads // ngroups_b)
    gc = h // (nheads // ngroups_c)

    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    mask_p = offs_p < headdim
    mask_n = offs_n < dstate
    mask_pn = mask_p[:, None] & mask_n[None, :]
    state_offs = pid_bh * headdim * dstate + offs_p[:, None] * dstate + offs_n[None, :]

    # chunk_dt works on a block of steps; here the block is one step
    one = tl.arange(0, 1)
    dt, _ = chunk_dt(tl.load(dt_ptr + pid_bh + one), dt_bias_ptr, h, one < 1, HAS_DT_BIAS, DT_SOFTPLUS)  # (1,)
    A = tl.load(A_ptr + h).to(tl.float32)
    x = tl.load(x_ptr + pid_bh * headdim + offs_p, mask=mask_p, other=0.0).to(tl.float32)  # (P,)
    Bv = tl.load(B_ptr + (b * ngroups_b + gb) * dstate + offs_n, mask=mask_n, other=0.0).to(tl.float32)  # (N,)
    Cv = tl.load(C_ptr + (b * ngroups_c + gc) * dstate + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    S = tl.load(state_ptr + state_offs, mask=mask_pn, other=0.0).to(tl.float32)  # (P, N)

    S = tl.exp(dt * A)[:, None] * S + (dt * x)[:, None] * Bv[None, :]
    y = tl.sum(S * Cv[None, :], axis=1)  # (P,)
    if HAS_D:
        if D_PER_P:
            y += x * tl.load(D_ptr + h * headdim + offs_p, mask=mask_p, other=0.0).to(tl.float32)
        else:
            y += x * tl.load(D_ptr + h).to(tl.float32)
    tl.store(new_state_ptr + state_offs, S.to(new_state_ptr.dtype.element_ty), mask=mask_pn)
    tl.store(y_ptr + pid_bh * headdim + offs_p, y.to(y_ptr.dtype.element_ty), mask=mask_p)
