"""Backward Triton kernel of the chunked SSD scan.

One program owns one (batch, head) and walks the chunks in reverse, carrying dS = dLoss/dS (P x N, fp32)
for the state leaving the current chunk. It reads the state S entering each chunk from `states`
(recomputed by ssd_fwd_kernel with STORE_STATES). With xd = dt * x, W_ts = exp(cum_t - cum_s) [t >= s],
decay_in_s = exp(cum_end - cum_s), decay_out_t = exp(cum_t), per chunk:
    dxd  = (W * C B^T)^T @ dy + decay_in * (B @ dS^T)
    dB   = (W * dy xd^T)^T @ C + decay_in * (xd @ dS)         summed over the heads of a group (atomics)
    dC   = (W * dy xd^T) @ B + decay_out * (dy @ S)           likewise
    dcum = row sums - column sums of (W * C B^T * dy xd^T)   + C . [decay_out * (dy @ S)]
           - B . [decay_in * (xd @ dS)]  (and the chunk-end terms, which every step's dt feeds)
    dS   = exp(cum_end) * dS + (decay_out * dy)^T @ C          the gradient of the state entering the chunk
then dt gets x . dxd + A * d(dt A) (d(dt A) = reverse cumsum of dcum), through softplus; x gets dt * dxd + D dy.
The test tests/test_ops_parity.py checks every gradient against autograd through the sequential reference.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import chunk_dt, mma


@triton.jit
def ssd_bwd_kernel(
    # inputs
    x_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    dt_bias_ptr,
    states_ptr,
    dy_ptr,
    dfinal_ptr,
    # outputs: dx (like x), ddt (B, L, H) fp32, dB/dC (B, L, G, N) fp32 zeroed, per-(batch, head) partial sums
    # dA (B, H) and dD (B, H, P), dinit (B, H, P, N) fp32
    dx_ptr,
    ddt_ptr,
    dB_ptr,
    dC_ptr,
    dA_ptr,
    dD_ptr,
    dinit_ptr,
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
    HAS_DFINAL: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    pid_bh = tl.program_id(0).to(tl.int64)
    b = pid_bh // nheads
    h = pid_bh % nheads
    gb = h // (nheads // ngroups_b)
    gc = h // (nheads // ngroups_c)

    offs_q = tl.arange(0, CHUNK)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    mask_p = offs_p < headdim
    mask_n = offs_n < dstate
    mask_pn = mask_p[:, None] & mask_n[None, :]
    causal = offs_q[:, None] >= offs_q[None, :]

    x_base = x_ptr + b * stride_x_b + h * headdim
    dense_bh = b * seqlen * nheads * headdim + h * headdim  # dy and dx are contiguous (B, L, H, P)
    dt_base = dt_ptr + b * stride_dt_b + h
    ddt_base = ddt_ptr + b * seqlen * nheads + h
    B_base = B_ptr + b * stride_B_b + gb * dstate
    C_base = C_ptr + b * stride_C_b + gc * dstate
    dB_base = dB_ptr + (b * seqlen * ngroups_b + gb) * dstate
    dC_base = dC_ptr + (b * seqlen * ngroups_c + gc) * dstate
    state_offs = offs_p[:, None] * dstate + offs_n[None, :]
    bh_state = (b * nheads + h) * headdim * dstate

    A = tl.load(A_ptr + h).to(tl.float32)
    if HAS_D:
        if D_PER_P:
            Dh = tl.load(D_ptr + h * headdim + offs_p, mask=mask_p, other=0.0).to(tl.float32)
        else:
            Dh = tl.load(D_ptr + h).to(tl.float32)
    if HAS_DFINAL:
        dS = tl.load(dfinal_ptr + bh_state + state_offs, mask=mask_pn, other=0.0).to(tl.float32)  # (P, N)
    else:
        dS = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    dA_acc = tl.zeros((CHUNK,), dtype=tl.float32)  # per-step partial sums of dLoss/dA
    dD_acc = tl.zeros((BLOCK_P,), dtype=tl.float32)

    for kk in range(nchunks):
        k = nchunks - 1 - kk
        offs_t = k * CHUNK + offs_q
        mask_t = (offs_t < seqlen) | EVEN_L
        mask_tp = mask_t[:, None] & mask_p[None, :]
        mask_tn = mask_t[:, None] & mask_n[None, :]
        dt_in = tl.load(dt_base + offs_t * stride_dt_l, mask=mask_t, other=0.0)
        dt, raw = chunk_dt(dt_in, dt_bias_ptr, h, mask_t, HAS_DT_BIAS, DT_SOFTPLUS)
        dA = dt * A
        cum = tl.cumsum(dA, axis=0)  # (Q,)
        cum_end = tl.sum(dA, axis=0)
        decay_in = tl.exp(cum_end - cum)  # (Q,)
        decay_out = tl.exp(cum)  # (Q,)
        W = tl.exp(tl.where(causal, cum[:, None] - cum[None, :], float("-inf")))  # (Q, Q), 0 above diagonal

        x = tl.load(x_base + offs_t[:, None] * stride_x_l + offs_p[None, :], mask=mask_tp, other=0.0)  # (Q, P)
        dy = tl.load(
            dy_ptr + dense_bh + offs_t[:, None] * nheads * headdim + offs_p[None, :], mask=mask_tp, other=0.0
        )  # (Q, P)
        Bk = tl.load(B_base + offs_t[:, None] * stride_B_l + offs_n[None, :], mask=mask_tn, other=0.0)  # (Q, N)
        Ck = tl.load(C_base + offs_t[:, None] * stride_C_l + offs_n[None, :], mask=mask_tn, other=0.0)  # (Q, N)
        ty = x.dtype  # operand type of the dots (bf16 in training, fp32 in the tight tests)
        xf = x.to(tl.float32)
        xd = (xf * dt[:, None]).to(ty)  # (Q, P)
        dS_op = dS.to(ty)

        # the order below ends each large tile's life early (the kernel is register-bound)
        WCB = W * mma(Ck, tl.trans(Bk), DOT_PRECISION)  # (Q, Q)
        dyxd = mma(dy, tl.trans(xd), DOT_PRECISION)  # (Q, Q): dy_t . xd_s
        Wdyxd = W * dyxd
        # log-decay gradient, intra-chunk part: G_ts is the (t, s) term of y_t . dy_t; d/dcum_t = +G, d/dcum_s = -G
        G = WCB * dyxd
        dcum = tl.sum(G, axis=1) - tl.sum(G, axis=0)  # (Q,)

        # C: intra-chunk part and the part through the state entering the chunk
        chunk_state = ((b * nchunks + k) * nheads + h) * headdim * dstate
        S = tl.load(states_ptr + chunk_state + state_offs, mask=mask_pn, other=0.0)  # (P, N) entering chunk k
        dC_in = decay_out[:, None] * mma(dy, S.to(ty), DOT_PRECISION)  # (Q, N)
        dcum += tl.sum(Ck.to(tl.float32) * dC_in, axis=1)
        dcum_end = tl.exp(cum_end) * tl.sum(tl.sum(dS * S.to(tl.float32), axis=1), axis=0)
        dC = mma(Wdyxd.to(ty), Bk, DOT_PRECISION) + dC_in
        # plain accumulation over heads: no ordering with other memory operations is needed
        tl.atomic_add(dC_base + offs_t[:, None] * ngroups_c * dstate + offs_n[None, :], dC, mask=mask_tn, sem="relaxed")

        # B: intra-chunk part and the part through the state leaving the chunk
        dB_out = decay_in[:, None] * mma(xd, dS_op, DOT_PRECISION)  # (Q, N)
        out_terms = tl.sum(Bk.to(tl.float32) * dB_out, axis=1)  # (Q,)
        dcum -= out_terms
        dcum_end += tl.sum(out_terms, axis=0)
        dB = mma(tl.trans(Wdyxd.to(ty)), Ck, DOT_PRECISION) + dB_out
        tl.atomic_add(dB_base + offs_t[:, None] * ngroups_b * dstate + offs_n[None, :], dB, mask=mask_tn, sem="relaxed")

        # x and dt
        dxd = mma(tl.trans(WCB.to(ty)), dy, DOT_PRECISION)  # (Q, P)
        dxd += decay_in[:, None] * mma(Bk, tl.trans(dS_op), DOT_PRECISION)
        d_dA = tl.cumsum(dcum, axis=0, reverse=True) + dcum_end  # (Q,): every dA_s feeds cum_t for t >= s and cum_end
        ddt = tl.sum(xf * dxd, axis=1) + A * d_dA
        dA_acc += dt * d_dA
        if DT_SOFTPLUS:
            ddt = ddt / (1.0 + tl.exp(-raw))  # softplus' = sigmoid
        tl.store(ddt_base + offs_t * nheads, ddt, mask=mask_t)
        dx = dxd * dt[:, None]
        dyf = dy.to(tl.float32)
        if HAS_D:
            if D_PER_P:
                dx += dyf * Dh[None, :]
            else:
                dx += dyf * Dh
            dD_acc += tl.sum(dyf * xf, axis=0)
        tl.store(
            dx_ptr + dense_bh + offs_t[:, None] * nheads * headdim + offs_p[None, :],
            dx.to(dx_ptr.dtype.element_ty),
            mask=mask_tp,
        )

        # the state gradient passed to the previous chunk
        dy_out = (dyf * decay_out[:, None]).to(ty)  # (Q, P)
        dS = dS * tl.exp(cum_end) + mma(tl.trans(dy_out), Ck, DOT_PRECISION)  # (P, N)

    tl.store(dinit_ptr + bh_state + state_offs, dS, mask=mask_pn)
    tl.store(dA_ptr + pid_bh, tl.sum(dA_acc, axis=0))
    if HAS_D:
        tl.store(dD_ptr + pid_bh * headdim + offs_p, dD_acc, mask=mask_p)
