"""Chunk-parallel forward, last step: every chunk's output from the state entering it (chunk_state.py's pass).

One program per (block of head dims, batch x chunk, head); with cum = cumsum(dt * A) in the chunk and S the state
entering chunk k (from the states buffer, fp32):
    y = exp(cum_t) * (C @ S^T) + ((C B^T) * exp(cum_t - cum_s) * dt_s * [t >= s]) @ x + D * x
C B^T and C S^T are summed over tiles of the state dims, so no tile holds more than (Q or P) x BLOCK_N of them.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import chunk_decay, mma


@triton.jit
def chunk_out_kernel(
    x_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    dt_bias_ptr,
    states_ptr,  # (B, K + 1, H, P, N) fp32, slot k = the state entering chunk k
    y_ptr,  # (B, L, H, P) contiguous
    seqlen,
    nchunks,
    stride_x_b,
    stride_x_l,
    stride_dt_b,
    stride_dt_l,
    stride_B_b,
    stride_B_l,
    stride_C_b,
    stride_C_l,
    nheads: tl.constexpr,
    headdim: tl.constexpr,
    dstate: tl.constexpr,
    ngroups_b: tl.constexpr,
    ngroups_c: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_D: tl.constexpr,
    D_PER_P: tl.constexpr,
    HAS_DT_BIAS: tl.constexpr,
    DT_SOFTPLUS: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    pid_p = tl.program_id(0)
    pid_bk = tl.program_id(1).to(tl.int64)
    h = tl.program_id(2).to(tl.int64)
    b = pid_bk // nchunks
    k = pid_bk % nchunks
    gb = h // (nheads // ngroups_b)
    gc = h // (nheads // ngroups_c)
    offs_q = tl.arange(0, CHUNK)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < headdim

    offs_t, mask_t, dt, _, cum, _ = chunk_decay(
        dt_ptr + b * stride_dt_b + h, dt_bias_ptr, A_ptr, h, k, seqlen, stride_dt_l, CHUNK, HAS_DT_BIAS, DT_SOFTPLUS
    )
    mask_tp = mask_t[:, None] & mask_p[None, :]
    x = tl.load(
        x_ptr + b * stride_x_b + offs_t[:, None] * stride_x_l + h * headdim + offs_p[None, :], mask=mask_tp, other=0.0
    )
    ty = x.dtype
    B_rows = B_ptr + b * stride_B_b + offs_t[:, None] * stride_B_l + gb * dstate
    C_rows = C_ptr + b * stride_C_b + offs_t[:, None] * stride_C_l + gc * dstate
    S_base = states_ptr + ((b * (nchunks + 1) + k) * nheads + h) * headdim * dstate + offs_p[:, None] * dstate

    y_state = tl.zeros((CHUNK, BLOCK_P), dtype=tl.float32)  # C @ S^T
    CB = tl.zeros((CHUNK, CHUNK), dtype=tl.float32)
    for n0 in range(0, dstate, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < dstate
        Bk = tl.load(B_rows + offs_n[None, :], mask=mask_t[:, None] & mask_n[None, :], other=0.0)  # (Q, N)
        Ck = tl.load(C_rows + offs_n[None, :], mask=mask_t[:, None] & mask_n[None, :], other=0.0)  # (Q, N)
        S = tl.load(S_base + offs_n[None, :], mask=mask_p[:, None] & mask_n[None, :], other=0.0)  # (P, N)
        y_state += mma(Ck, tl.trans(S.to(ty)), DOT_PRECISION)
        CB += mma(Ck, tl.trans(Bk), DOT_PRECISION)
    causal = offs_q[:, None] >= offs_q[None, :]
    decay = tl.exp(tl.where(causal, cum[:, None] - cum[None, :], float("-inf")))  # (Q, Q), 0 above the diagonal
    y = tl.exp(cum)[:, None] * y_state + mma((CB * decay * dt[None, :]).to(ty), x, DOT_PRECISION)  # (Q, P)
    if HAS_D:
        if D_PER_P:
            y += (
                x.to(tl.float32) * tl.load(D_ptr + h * headdim + offs_p, mask=mask_p, other=0.0).to(tl.float32)[None, :]
            )
        else:
            y += x.to(tl.float32) * tl.load(D_ptr + h).to(tl.float32)
    y_rows = (b * seqlen + offs_t) * nheads * headdim + h * headdim
    tl.store(y_ptr + y_rows[:, None] + offs_p[None, :], y.to(y_ptr.dtype.element_ty), mask=mask_tp)
