"""Chunk-parallel SSD kernels at the level of states: per-chunk local states, and the short pass over chunks.

The states of one (batch, head) live in a buffer of K + 1 slots (K chunks), (B, K + 1, H, P, N) fp32:
slot j holds the state entering chunk j (slot 0 the initial state, slot K the final state), and in the backward
pass the gradient of the loss with respect to that state. With a_k = exp(cum_end_k) (the decay over chunk k):
    forward   states[k + 1] = a_k * states[k] + local_k          local_k  = (x * dt * exp(cum_end - cum))^T @ B
    backward  dstates[k]    = a_k * dstates[k + 1] + dlocal_k    dlocal_k = (dy * exp(cum))^T @ C
chunk_state_kernel computes every local_k (or dlocal_k) in parallel over (batch, chunk, head, tile of P x N) and
writes it to the slot the pass reads it from (a "chunk" of the pass may be a segment of NSUB chunks, which it then
walks in order); state_pass_kernel then walks the chunks in parallel over (batch,
head, block of P x N) and overwrites each slot with the state (or state gradient) itself, one slot behind its read.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import chunk_decay, mma


@triton.jit
def chunk_state_kernel(
    u_ptr,  # x (forward) or dy (backward): (B, L, H, P)
    dt_ptr,
    A_ptr,
    dt_bias_ptr,
    V_ptr,  # B (forward) or C (backward): (B, L, G, N)
    buf_ptr,  # (B, K + 1, H, P, N) fp32
    seqlen,
    nchunks,
    stride_u_b,
    stride_u_l,
    stride_dt_b,
    stride_dt_l,
    stride_V_b,
    stride_V_l,
    nheads: tl.constexpr,
    headdim: tl.constexpr,
    dstate: tl.constexpr,
    ngroups: tl.constexpr,
    CHUNK: tl.constexpr,
    NSUB: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_DT_BIAS: tl.constexpr,
    DT_SOFTPLUS: tl.constexpr,
    REVERSE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    n_pblocks = tl.cdiv(headdim, BLOCK_P)
    pid_pn = tl.program_id(0)
    pid_bk = tl.program_id(1).to(tl.int64)
    h = tl.program_id(2).to(tl.int64)
    b = pid_bk // nchunks
    k = pid_bk % nchunks
    g = h // (nheads // ngroups)
    offs_p = (pid_pn % n_pblocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = (pid_pn // n_pblocks) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_p = offs_p < headdim
    mask_n = offs_n < dstate

    # chunk k of the pass spans NSUB chunks of CHUNK steps (a segment, for the segmented forward), walked in order
    local = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    log_decay = 0.0  # from the pass chunk's start to the current sub-chunk's start
    for j in range(NSUB):
        offs_t, mask_t, dt, _, cum, cum_end = chunk_decay(
            dt_ptr + b * stride_dt_b + h,
            dt_bias_ptr,
            A_ptr,
            h,
            k * NSUB + j,
            seqlen,
            stride_dt_l,
            CHUNK,
            HAS_DT_BIAS,
            DT_SOFTPLUS,
        )
        if REVERSE:
            weight = tl.exp(log_decay + cum)  # how the state entering the chunk reaches each step's output
        else:
            weight = dt * tl.exp(cum_end - cum)  # how each step's input reaches the sub-chunk end
            local *= tl.exp(cum_end)
        u = tl.load(
            u_ptr + b * stride_u_b + offs_t[:, None] * stride_u_l + h * headdim + offs_p[None, :],
            mask=mask_t[:, None] & mask_p[None, :],
            other=0.0,
        )  # (Q, P)
        V = tl.load(
            V_ptr + b * stride_V_b + offs_t[:, None] * stride_V_l + g * dstate + offs_n[None, :],
            mask=mask_t[:, None] & mask_n[None, :],
            other=0.0,
        )  # (Q, N)
        u_w = (u.to(tl.float32) * weight[:, None]).to(u.dtype)
        local += mma(tl.trans(u_w), V, DOT_PRECISION)  # (P, N)
        log_decay += cum_end
    slot = k if REVERSE else k + 1  # the slot the pass reads chunk k's local term from
    offs = ((b * (nchunks + 1) + slot) * nheads + h) * headdim * dstate + offs_p[:, None] * dstate + offs_n[None, :]
    tl.store(buf_ptr + offs, local, mask=mask_p[:, None] & mask_n[None, :])


@triton.jit
def state_pass_kernel(
    buf_ptr,  # (B, K + 1, H, P, N) fp32: local terms in, states (or state gradients) out
    dt_ptr,
    A_ptr,
    dt_bias_ptr,
    init_ptr,  # (B, H, P, N): initial state (forward) or gradient of the final state (backward)
    other_ptr,  # backward with HAS_DOT: the forward states buffer
    dot_ptr,  # backward with HAS_DOT: (P x N blocks, B, K, H) fp32 partial sums <dstates[k + 1], states[k + 1]>
    seqlen,
    nchunks,
    stride_dt_b,
    stride_dt_l,
    nheads: tl.constexpr,
    headdim: tl.constexpr,
    dstate: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
    HAS_DT_BIAS: tl.constexpr,
    DT_SOFTPLUS: tl.constexpr,
    HAS_INIT: tl.constexpr,
    REVERSE: tl.constexpr,
    HAS_DOT: tl.constexpr,
):
    pid_blk = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    batch = tl.num_programs(1) // nheads
    b = pid_bh // nheads
    h = pid_bh % nheads
    offs = pid_blk * BLOCK + tl.arange(0, BLOCK)  # flat (P x N) positions
    mask = offs < headdim * dstate
    slot_stride = nheads * headdim * dstate
    base = (b * (nchunks + 1) * nheads + h) * headdim * dstate + offs
    if HAS_INIT:
        s = tl.load(init_ptr + pid_bh * headdim * dstate + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        s = tl.zeros((BLOCK,), dtype=tl.float32)
    dt_base = dt_ptr + b * stride_dt_b + h
    for i in range(nchunks):
        if REVERSE:
            k = nchunks - 1 - i
            write = k + 1  # the slot of the state s is now: after chunk k (backward), before it (forward)
            read = k
        else:
            k = i
            write = k
            read = k + 1
        _, _, _, _, _, cum_end = chunk_decay(
            dt_base, dt_bias_ptr, A_ptr, h, k, seqlen, stride_dt_l, CHUNK, HAS_DT_BIAS, DT_SOFTPLUS
        )
        if HAS_DOT:
            # dLoss/dcum_end of chunk k: <gradient of the state leaving it, that state>
            other = tl.load(other_ptr + base + write * slot_stride, mask=mask, other=0.0)
            tl.store(dot_ptr + ((pid_blk * batch + b) * nchunks + k) * nheads + h, tl.sum(s * other, axis=0))
        local = tl.load(buf_ptr + base + read * slot_stride, mask=mask, other=0.0)
        tl.store(buf_ptr + base + write * slot_stride, s, mask=mask)
        s = tl.exp(cum_end) * s + local
    if REVERSE:
        tl.store(buf_ptr + base, s, mask=mask)
    else:
        tl.store(buf_ptr + base + nchunks * slot_stride, s, mask=mask)
