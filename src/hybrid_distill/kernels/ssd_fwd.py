"""Forward Triton kernel of the chunked SSD scan (Mamba-2), fused into one pass over the sequence.

One program owns one (batch, head, block of head dims) and walks the chunks in order, keeping the
running state S (BLOCK_P x N, fp32) in registers. Per chunk of Q steps (cum = cumsum(dt * A) in the chunk):
    y     = ((C B^T) * exp(cum_t - cum_s) * dt_s * [t >= s]) @ x      intra-chunk, a masked (Q x Q) "attention"
          + exp(cum_t) * (C @ S^T)                                    the state entering the chunk
          + D * x
    S     = exp(cum_Q) * S + (x * dt * exp(cum_Q - cum_s))^T @ B      the state leaving the chunk
So x and y cross HBM once each and no per-chunk state is written (mamba-ssm's Triton SSD writes and
re-reads one (P x N) state per chunk and head). The same kernel, with COMPUTE_Y off and STORE_STATES on,
recomputes the chunk-entry states for the backward pass.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import chunk_dt, mma


@triton.jit
def ssd_fwd_kernel(
    # inputs
    x_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    dt_bias_ptr,
    init_ptr,
    # outputs
    y_ptr,
    final_ptr,
    states_ptr,
    # sizes
    seqlen,
    nchunks,
    # strides of batch and sequence; inside a step, (heads, headdim) and (groups, dstate) are contiguous
    stride_x_b,
    stride_x_l,
    stride_dt_b,
    stride_dt_l,
    stride_B_b,
    stride_B_l,
    stride_C_b,
    stride_C_l,
    # model sizes are compile-time constants: masks against them fold away when the blocks fit exactly,
    # and EVEN_L (seqlen a multiple of CHUNK) folds the sequence-end masks
    nheads: tl.constexpr,
    headdim: tl.constexpr,
    dstate: tl.constexpr,
    ngroups_b: tl.constexpr,
    ngroups_c: tl.constexpr,
    EVEN_L: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_D: tl.constexpr,
    D_PER_P: tl.constexpr,
    HAS_DT_BIAS: tl.constexpr,
    DT_SOFTPLUS: tl.constexpr,
    HAS_INIT: tl.constexpr,
    COMPUTE_Y: tl.constexpr,
    STORE_FINAL: tl.constexpr,
    STORE_STATES: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    pid_p = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)  # int64: offsets into (batch, chunks, heads, P, N) pass 2^31
    b = pid_bh // nheads
    h = pid_bh % nheads
    gb = h // (nheads // ngroups_b)  # head h reads group h // (H / G)
    gc = h // (nheads // ngroups_c)

    offs_q = tl.arange(0, CHUNK)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    mask_p = offs_p < headdim
    mask_n = offs_n < dstate
    mask_pn = mask_p[:, None] & mask_n[None, :]
    causal = offs_q[:, None] >= offs_q[None, :]  # (Q, Q): t >= s

    x_base = x_ptr + b * stride_x_b + h * headdim
    dt_base = dt_ptr + b * stride_dt_b + h
    B_base = B_ptr + b * stride_B_b + gb * dstate
    C_base = C_ptr + b * stride_C_b + gc * dstate
    state_offs = offs_p[:, None] * dstate + offs_n[None, :]  # (P, N) inside one (head) state
    bh_state = (b * nheads + h) * headdim * dstate

    A = tl.load(A_ptr + h).to(tl.float32)
    if HAS_D:
        if D_PER_P:
            Dh = tl.load(D_ptr + h * headdim + offs_p, mask=mask_p, other=0.0).to(tl.float32)  # (P,)
        else:
            Dh = tl.load(D_ptr + h).to(tl.float32)
    if HAS_INIT:
        state = tl.load(init_ptr + bh_state + state_offs, mask=mask_pn, other=0.0).to(tl.float32)  # (P, N)
    else:
        state = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)

    dt_ptrs = dt_base + offs_q * stride_dt_l
    dt_next = tl.load(dt_ptrs, mask=offs_q < seqlen, other=0.0)  # (Q,) raw dt of chunk 0
    for k in range(nchunks):
        offs_t = k * CHUNK + offs_q
        mask_t = (offs_t < seqlen) | EVEN_L
        dt_in = dt_next
        # prefetch the next chunk's dt: every chunk's chain of dependent work starts from it
        dt_next = tl.load(dt_ptrs + (k + 1) * CHUNK * stride_dt_l, mask=offs_t + CHUNK < seqlen, other=0.0)
        dt, _ = chunk_dt(dt_in, dt_bias_ptr, h, mask_t, HAS_DT_BIAS, DT_SOFTPLUS)  # (Q,)
        dA = dt * A
        cum = tl.cumsum(dA, axis=0)  # (Q,) log-decay from the chunk start, inclusive
        cum_end = tl.sum(dA, axis=0)
        x = tl.load(
            x_base + offs_t[:, None] * stride_x_l + offs_p[None, :], mask=mask_t[:, None] & mask_p[None, :], other=0.0
        )  # (Q, P)
        Bk = tl.load(
            B_base + offs_t[:, None] * stride_B_l + offs_n[None, :], mask=mask_t[:, None] & mask_n[None, :], other=0.0
        )  # (Q, N)
        if STORE_STATES:
            # the state entering chunk k, for the backward pass: states[b, k, h]
            chunk_state = ((b * nchunks + k) * nheads + h) * headdim * dstate
            tl.store(states_ptr + chunk_state + state_offs, state.to(states_ptr.dtype.element_ty), mask=mask_pn)
        if COMPUTE_Y:
            # the state-dependent term first, so that the state update (the loop-carried chain) starts early
            Ck = tl.load(
                C_base + offs_t[:, None] * stride_C_l + offs_n[None, :],
                mask=mask_t[:, None] & mask_n[None, :],
                other=0.0,
            )  # (Q, N)
            y = tl.exp(cum)[:, None] * mma(Ck, tl.trans(state.to(x.dtype)), DOT_PRECISION)  # (Q, P)
        # each step's input reaches the chunk end decayed by exp(cum_end - cum_s)
        x_in = (x.to(tl.float32) * (dt * tl.exp(cum_end - cum))[:, None]).to(x.dtype)  # (Q, P)
        state = state * tl.exp(cum_end) + mma(tl.trans(x_in), Bk, DOT_PRECISION)  # (P, N)
        if COMPUTE_Y:
            CB = mma(Ck, tl.trans(Bk), DOT_PRECISION)  # (Q, Q)
            decay = tl.exp(tl.where(causal, cum[:, None] - cum[None, :], float("-inf")))  # (Q, Q), 0 above diagonal
            scores = (CB * decay * dt[None, :]).to(x.dtype)
            y += mma(scores, x, DOT_PRECISION)
            if HAS_D:
                if D_PER_P:
                    y += x.to(tl.float32) * Dh[None, :]
                else:
                    y += x.to(tl.float32) * Dh
            y_rows = (b * seqlen + offs_t) * nheads * headdim + h * headdim  # y is contiguous (B, L, H, P)
            tl.store(
                y_ptr + y_rows[:, None] + offs_p[None, :],
                y.to(y_ptr.dtype.element_ty),
                mask=mask_t[:, None] & mask_p[None, :],
            )

    if STORE_FINAL:
        tl.store(final_ptr + bh_state + state_offs, state, mask=mask_pn)
