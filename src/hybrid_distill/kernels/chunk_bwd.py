"""Chunk-parallel backward: per-chunk gradient kernels, run after both state passes of chunk_state.py.

They read S = states[k] (the state entering chunk k) and dS = dstates[k + 1] (dLoss/d of the state leaving it), so
every chunk is independent. With xd = dt * x, W_ts = exp(cum_t - cum_s) [t >= s] and, per head h,
    dC_t = sum_s W_ts (dy_t . xd_s) B_s + exp(cum_t) (dy_t @ S)              summed over the heads of C's group
    dB_s = sum_t W_ts (dy_t . xd_s) C_t + exp(cum_end - cum_s) (xd_s @ dS)   summed over the heads of B's group
    dxd  = (W * C B^T)^T @ dy + exp(cum_end - cum) * (B @ dS^T)              then dx = dt * dxd + D * dy
The log-decay gradient needs no extra products: the loss reaches cum_t once through the pairs where t is the
output step (the sum is C_t . dC_t of head h) and once, negated, where t is the input step (B_t . dB_t of head h),
and cum_end through the state leaving the chunk (<dS, S_leave>, from state_pass_kernel). Hence
    d(dt A)_s = sum_{t >= s} (C_t . dC_t - B_t . dB_t) + <dS, S_leave>,   ddt = x . dxd + A d(dt A),   dA = sum dt d(dt A)
chunk_dbc_kernel computes dB (or dC) of one group and chunk, looping over the group's heads and summing in
registers (no atomics), and writes the per-head dot products; chunk_dx_kernel then computes dx, ddt, dA and dD.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import chunk_decay, mma


@triton.jit
def chunk_dbc_kernel(
    # "own" is the tensor whose gradient this is (B or C), "other" the one it pairs with in C B^T
    own_ptr,  # (B, L, G_own, N)
    other_ptr,  # (B, L, G_other, N)
    x_ptr,
    dt_ptr,
    A_ptr,
    dt_bias_ptr,
    dy_ptr,  # (B, L, H, P) contiguous
    state_ptr,  # (B, K + 1, H, P, N) fp32: states (for dC) or dstates (for dB)
    dV_ptr,  # (B, L, G_own, N) contiguous
    vdv_ptr,  # (N blocks, B, L, H) fp32: per-head own . d_own, partial over the N tiles
    seqlen,
    nchunks,
    stride_x_b,
    stride_x_l,
    stride_dt_b,
    stride_dt_l,
    stride_own_b,
    stride_own_l,
    stride_other_b,
    stride_other_l,
    nheads: tl.constexpr,
    headdim: tl.constexpr,
    dstate: tl.constexpr,
    groups_own: tl.constexpr,
    groups_other: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_DT_BIAS: tl.constexpr,
    DT_SOFTPLUS: tl.constexpr,
    IS_B: tl.constexpr,  # dB reads dS = dstates[k + 1], leaving the chunk; dC reads S = states[k], entering it
    DOT_PRECISION: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_bk = tl.program_id(1).to(tl.int64)
    g = tl.program_id(2).to(tl.int64)  # the group of the gradient computed here
    batch = tl.num_programs(1) // nchunks
    b = pid_bk // nchunks
    k = pid_bk % nchunks
    heads_per_group: tl.constexpr = nheads // groups_own
    if IS_B:
        slot = k + 1
    else:
        slot = k
    state_base = state_ptr + (b * (nchunks + 1) + slot) * nheads * headdim * dstate

    offs_q = tl.arange(0, CHUNK)
    offs_t = k * CHUNK + offs_q
    mask_t = offs_t < seqlen
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_tn = mask_t[:, None] & (offs_n < dstate)[None, :]
    own = tl.load(
        own_ptr + b * stride_own_b + offs_t[:, None] * stride_own_l + g * dstate + offs_n[None, :],
        mask=mask_tn,
        other=0.0,
    )  # (Q, N)
    acc = tl.zeros((CHUNK, BLOCK_N), dtype=tl.float32)
    for i in range(heads_per_group):
        h = g * heads_per_group + i
        _, _, dt, _, cum, cum_end = chunk_decay(
            dt_ptr + b * stride_dt_b + h, dt_bias_ptr, A_ptr, h, k, seqlen, stride_dt_l, CHUNK, HAS_DT_BIAS, DT_SOFTPLUS
        )
        go = h // (nheads // groups_other)
        other = tl.load(
            other_ptr + b * stride_other_b + offs_t[:, None] * stride_other_l + go * dstate + offs_n[None, :],
            mask=mask_tn,
            other=0.0,
        )  # (Q, N)
        ty = other.dtype
        M = tl.zeros((CHUNK, CHUNK), dtype=tl.float32)  # dC: dy_t . xd_s; dB: its transpose
        US = tl.zeros((CHUNK, BLOCK_N), dtype=tl.float32)  # dC: dy @ S; dB: xd @ dS
        for p0 in range(0, headdim, BLOCK_P):
            offs_p = p0 + tl.arange(0, BLOCK_P)
            mask_p = offs_p < headdim
            mask_tp = mask_t[:, None] & mask_p[None, :]
            x = tl.load(
                x_ptr + b * stride_x_b + offs_t[:, None] * stride_x_l + h * headdim + offs_p[None, :],
                mask=mask_tp,
                other=0.0,
            )  # (Q, P)
            dy = tl.load(
                dy_ptr + ((b * seqlen + offs_t[:, None]) * nheads + h) * headdim + offs_p[None, :],
                mask=mask_tp,
                other=0.0,
            )  # (Q, P)
            xd = (x.to(tl.float32) * dt[:, None]).to(ty)
            S = tl.load(
                state_base + h * headdim * dstate + offs_p[:, None] * dstate + offs_n[None, :],
                mask=mask_p[:, None] & (offs_n < dstate)[None, :],
                other=0.0,
            ).to(ty)  # (P, N)
            if IS_B:
                M += mma(xd, tl.trans(dy), DOT_PRECISION)
                US += mma(xd, S, DOT_PRECISION)
            else:
                M += mma(dy, tl.trans(xd), DOT_PRECISION)
                US += mma(dy, S, DOT_PRECISION)
        if IS_B:  # rows are input steps s, columns output steps t >= s
            pair = tl.exp(tl.where(offs_q[None, :] >= offs_q[:, None], cum[None, :] - cum[:, None], float("-inf")))
            scale = tl.exp(cum_end - cum)
        else:  # rows are output steps t, columns input steps s <= t
            pair = tl.exp(tl.where(offs_q[:, None] >= offs_q[None, :], cum[:, None] - cum[None, :], float("-inf")))
            scale = tl.exp(cum)
        WM = pair * M  # (Q, Q)
        state_part = scale[:, None] * US  # (Q, N)
        acc += mma(WM.to(ty), other, DOT_PRECISION) + state_part  # head h's share of the gradient
        # own . d_own of head h, its intra-chunk part from W * M in fp32: rounded to bf16 first (as in the dot
        # above) it would feed the cancellations of the log-decay gradient
        own_other = mma(own, tl.trans(other), DOT_PRECISION)  # (Q, Q)
        vdv = tl.sum(WM * own_other, axis=1) + tl.sum(own.to(tl.float32) * state_part, axis=1)  # (Q,)
        tl.store(vdv_ptr + ((pid_n * batch + b) * seqlen + offs_t) * nheads + h, vdv, mask=mask_t)
    tl.store(
        dV_ptr + ((b * seqlen + offs_t[:, None]) * groups_own + g) * dstate + offs_n[None, :],
        acc.to(dV_ptr.dtype.element_ty),
        mask=mask_tn,
    )


@triton.jit
def chunk_dx_kernel(
    x_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    dt_bias_ptr,
    dy_ptr,  # (B, L, H, P) contiguous
    dstates_ptr,  # (B, K + 1, H, P, N) fp32
    dcum_ptr,  # (B, L, H) fp32: C . dC - B . dB per head
    dcum_end_ptr,  # (B, K, H) fp32: <dS, S_leave>
    dx_ptr,  # (B, L, H, P) contiguous
    ddt_ptr,  # (B, L, H) fp32
    dA_ptr,  # (B, K, H) fp32 partial sums
    dD_ptr,  # (B, K, H, P) fp32 partial sums
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
    pid_bk = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    b = pid_bk // nchunks
    k = pid_bk % nchunks
    gb = h // (nheads // ngroups_b)
    gc = h // (nheads // ngroups_c)
    offs_q = tl.arange(0, CHUNK)
    offs_t, mask_t, dt, raw, cum, cum_end = chunk_decay(
        dt_ptr + b * stride_dt_b + h, dt_bias_ptr, A_ptr, h, k, seqlen, stride_dt_l, CHUNK, HAS_DT_BIAS, DT_SOFTPLUS
    )
    B_rows = B_ptr + b * stride_B_b + offs_t[:, None] * stride_B_l + gb * dstate
    C_rows = C_ptr + b * stride_C_b + offs_t[:, None] * stride_C_l + gc * dstate
    dS_base = dstates_ptr + ((b * (nchunks + 1) + k + 1) * nheads + h) * headdim * dstate  # leaving chunk k

    CB = tl.zeros((CHUNK, CHUNK), dtype=tl.float32)
    for n0 in range(0, dstate, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_tn = mask_t[:, None] & (offs_n < dstate)[None, :]
        Ck = tl.load(C_rows + offs_n[None, :], mask=mask_tn, other=0.0)
        Bk = tl.load(B_rows + offs_n[None, :], mask=mask_tn, other=0.0)
        CB += mma(Ck, tl.trans(Bk), DOT_PRECISION)
    ty = B_ptr.dtype.element_ty
    causal = offs_q[:, None] >= offs_q[None, :]
    WCB_T = tl.trans((tl.exp(tl.where(causal, cum[:, None] - cum[None, :], float("-inf"))) * CB).to(ty))  # (s, t)
    decay_in = tl.exp(cum_end - cum)  # (Q,)

    x_dxd = tl.zeros((CHUNK,), dtype=tl.float32)  # x_s . dxd_s
    for p0 in range(0, headdim, BLOCK_P):
        offs_p = p0 + tl.arange(0, BLOCK_P)
        mask_p = offs_p < headdim
        mask_tp = mask_t[:, None] & mask_p[None, :]
        x = tl.load(
            x_ptr + b * stride_x_b + offs_t[:, None] * stride_x_l + h * headdim + offs_p[None, :],
            mask=mask_tp,
            other=0.0,
        ).to(tl.float32)  # (Q, P)
        dense = ((b * seqlen + offs_t[:, None]) * nheads + h) * headdim + offs_p[None, :]  # dy, dx: (B, L, H, P)
        dy = tl.load(dy_ptr + dense, mask=mask_tp, other=0.0)  # (Q, P)
        B_dS = tl.zeros((CHUNK, BLOCK_P), dtype=tl.float32)
        for n0 in range(0, dstate, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            mask_n = offs_n < dstate
            Bk = tl.load(B_rows + offs_n[None, :], mask=mask_t[:, None] & mask_n[None, :], other=0.0)  # (Q, N)
            dS = tl.load(
                dS_base + offs_p[:, None] * dstate + offs_n[None, :], mask=mask_p[:, None] & mask_n[None, :], other=0.0
            )  # (P, N)
            B_dS += mma(Bk, tl.trans(dS.to(ty)), DOT_PRECISION)
        dxd = mma(WCB_T, dy, DOT_PRECISION) + decay_in[:, None] * B_dS  # (Q, P)
        x_dxd += tl.sum(x * dxd, axis=1)
        dx = dxd * dt[:, None]
        dyf = dy.to(tl.float32)
        if HAS_D:
            if D_PER_P:
                dx += dyf * tl.load(D_ptr + h * headdim + offs_p, mask=mask_p, other=0.0).to(tl.float32)[None, :]
            else:
                dx += dyf * tl.load(D_ptr + h).to(tl.float32)
            tl.store(dD_ptr + (pid_bk * nheads + h) * headdim + offs_p, tl.sum(dyf * x, axis=0), mask=mask_p)
        tl.store(dx_ptr + dense, dx.to(dx_ptr.dtype.element_ty), mask=mask_tp)

    dcum = tl.load(dcum_ptr + (b * seqlen + offs_t) * nheads + h, mask=mask_t, other=0.0)  # (Q,)
    # every dA_s feeds cum_t for t >= s and cum_end
    d_dA = tl.cumsum(dcum, axis=0, reverse=True) + tl.load(dcum_end_ptr + pid_bk * nheads + h)
    ddt = x_dxd + tl.load(A_ptr + h).to(tl.float32) * d_dA
    if DT_SOFTPLUS:
        ddt = ddt / (1.0 + tl.exp(-raw))  # softplus' = sigmoid
    tl.store(ddt_ptr + (b * seqlen + offs_t) * nheads + h, ddt, mask=mask_t)
    tl.store(dA_ptr + pid_bk * nheads + h, tl.sum(dt * d_dA, axis=0))
