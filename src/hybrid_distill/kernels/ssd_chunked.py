"""Launchers of the chunk-parallel SSD kernels (chunk_state.py, chunk_fwd.py, chunk_bwd.py).

Forward:  local chunk states -> state pass over chunks -> chunk outputs.
Backward: the forward's states again (recomputed, not kept), local state gradients -> reverse pass (which also
          gives <dS, S> per chunk) -> dB and dC per group and chunk -> dx, ddt, dA, dD per head and chunk.
Layouts as in ssd.py; the states buffers are (B, K + 1, H, P, N) fp32 (chunk_state.py says what each slot holds).
"""

from __future__ import annotations

import torch
import triton

from .chunk_bwd import chunk_dbc_kernel, chunk_dx_kernel
from .chunk_fwd import chunk_out_kernel
from .chunk_state import chunk_state_kernel, state_pass_kernel
from .launch import LaunchConfig, block, dot_precision, finish_grads

# module default, read at each call (experiments/kernels/bench.py can rebind it). Not tuned on a GPU yet.
# Chunk 32, not 64: longer chunks halve the state traffic but, in bf16, made the dA and dt_bias gradients (sums over
# every step, with cancellation) noisier: 3.0e-2 relative error at 64 against 8.8e-3 at 32 on one small input
# (the sequential backward: 1.3e-2), where the tests allow 3e-2
CHUNKED_CONFIG = LaunchConfig(chunk=32, block_p=64, num_warps=4, num_stages=2, block_n=64)
PASS_BLOCK = 1024  # flat (P x N) state entries per program of the state pass


def _tiles(headdim: int, dstate: int, config: LaunchConfig) -> dict:
    return dict(
        CHUNK=config.chunk, BLOCK_P=min(config.block_p, block(headdim)), BLOCK_N=min(config.block_n, block(dstate))
    )


def _launch(config: LaunchConfig) -> dict:
    return dict(num_warps=config.num_warps, num_stages=config.num_stages)


def chunk_states(u, dt, A, V, dt_bias, dt_softplus, init, *, reverse, config, other=None, nsub=1):
    """States (reverse=False: u = x, V = B, init = initial state) or state gradients (reverse=True: u = dy, V = C,
    init = gradient of the final state) of every chunk boundary: the (B, K + 1, H, P, N) fp32 buffer, and with
    `other` (the forward states, reverse only) the partial sums (blocks, B, K, H) of <dstates[k+1], states[k+1]>.
    With nsub > 1 the boundaries are those of segments of nsub chunks."""
    batch, seqlen, nheads, headdim = u.shape
    dstate = V.shape[-1]
    nchunks = triton.cdiv(seqlen, config.chunk * nsub)
    tiles = _tiles(headdim, dstate, config)
    buf = u.new_empty(batch, nchunks + 1, nheads, headdim, dstate, dtype=torch.float32)
    flags = dict(HAS_DT_BIAS=dt_bias is not None, DT_SOFTPLUS=dt_softplus, REVERSE=reverse)
    grid = (
        triton.cdiv(headdim, tiles["BLOCK_P"]) * triton.cdiv(dstate, tiles["BLOCK_N"]),
        batch * nchunks,
        nheads,
    )
    chunk_state_kernel[grid](
        u,
        dt,
        A,
        dt_bias,
        V,
        buf,
        seqlen,
        nchunks,
        u.stride(0),
        u.stride(1),
        dt.stride(0),
        dt.stride(1),
        V.stride(0),
        V.stride(1),
        nheads=nheads,
        headdim=headdim,
        dstate=dstate,
        ngroups=V.shape[2],
        **tiles,
        NSUB=nsub,
        **flags,
        DOT_PRECISION=dot_precision(u.dtype),
        **_launch(config),
    )
    pass_block = min(PASS_BLOCK, triton.next_power_of_2(headdim * dstate))
    nblocks = triton.cdiv(headdim * dstate, pass_block)
    dots = u.new_empty(nblocks, batch, nchunks, nheads, dtype=torch.float32) if other is not None else None
    state_pass_kernel[(nblocks, batch * nheads)](
        buf,
        dt,
        A,
        dt_bias,
        init,
        other,
        dots,
        seqlen,
        nchunks,
        dt.stride(0),
        dt.stride(1),
        nheads=nheads,
        headdim=headdim,
        dstate=dstate,
        CHUNK=config.chunk * nsub,
        BLOCK=pass_block,
        **flags,
        HAS_INIT=init is not None,
        HAS_DOT=other is not None,
    )
    return buf, dots


def _strides(x, dt, *tensors):
    """(batch, sequence) strides of each tensor, flattened, in the kernels' argument order."""
    return tuple(s for t in (x, dt, *tensors) for s in (t.stride(0), t.stride(1)))


def _d_flags(D):
    return dict(HAS_D=D is not None, D_PER_P=D is not None and D.dim() == 2)


def chunked_forward(x, dt, A, B, C, D, dt_bias, initial_state, dt_softplus, config: LaunchConfig | None = None):
    """y (B, L, H, P) in x's dtype and the final state (B, H, P, N) fp32."""
    config = config or CHUNKED_CONFIG
    batch, seqlen, nheads, headdim = x.shape
    dstate = B.shape[-1]
    nchunks = triton.cdiv(seqlen, config.chunk)
    tiles = _tiles(headdim, dstate, config)
    states, _ = chunk_states(x, dt, A, B, dt_bias, dt_softplus, initial_state, reverse=False, config=config)
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    chunk_out_kernel[(triton.cdiv(headdim, tiles["BLOCK_P"]), batch * nchunks, nheads)](
        x,
        dt,
        A,
        B,
        C,
        D,
        dt_bias,
        states,
        y,
        seqlen,
        nchunks,
        *_strides(x, dt, B, C),
        nheads=nheads,
        headdim=headdim,
        dstate=dstate,
        ngroups_b=B.shape[2],
        ngroups_c=C.shape[2],
        **tiles,
        **_d_flags(D),
        HAS_DT_BIAS=dt_bias is not None,
        DT_SOFTPLUS=dt_softplus,
        DOT_PRECISION=dot_precision(x.dtype),
        **_launch(config),
    )
    return y, states[:, -1].clone()  # a copy, so that the (K + 1)-slot buffer is freed


def chunked_backward(
    x, dt, A, B, C, D, dt_bias, initial_state, dt_softplus, dy, dfinal, config: LaunchConfig | None = None
):
    """Gradients (dx, ddt, dA, dB, dC, dD, ddt_bias, dinitial_state); None for absent inputs. dy is contiguous."""
    config = config or CHUNKED_CONFIG
    batch, seqlen, nheads, headdim = x.shape
    dstate = B.shape[-1]
    nchunks = triton.cdiv(seqlen, config.chunk)
    tiles = _tiles(headdim, dstate, config)
    common = dict(
        nheads=nheads,
        headdim=headdim,
        dstate=dstate,
        **tiles,
        HAS_DT_BIAS=dt_bias is not None,
        DT_SOFTPLUS=dt_softplus,
        DOT_PRECISION=dot_precision(x.dtype),
        **_launch(config),
    )
    states, _ = chunk_states(x, dt, A, B, dt_bias, dt_softplus, initial_state, reverse=False, config=config)
    dstates, dots = chunk_states(dy, dt, A, C, dt_bias, dt_softplus, dfinal, reverse=True, config=config, other=states)
    dcum_end = dots.sum(0)  # (B, K, H)

    n_nblocks = triton.cdiv(dstate, tiles["BLOCK_N"])
    vdv = x.new_empty(2, n_nblocks, batch, seqlen, nheads, dtype=torch.float32)  # [B . dB, C . dC] per head
    dB = torch.empty(B.shape, dtype=B.dtype, device=B.device)
    dC = torch.empty(C.shape, dtype=C.dtype, device=C.device)
    for i, (own, other, state, d_own) in enumerate(((B, C, dstates, dB), (C, B, states, dC))):
        chunk_dbc_kernel[(n_nblocks, batch * nchunks, own.shape[2])](
            own,
            other,
            x,
            dt,
            A,
            dt_bias,
            dy,
            state,
            d_own,
            vdv[i],
            seqlen,
            nchunks,
            *_strides(x, dt, own, other),
            groups_own=own.shape[2],
            groups_other=other.shape[2],
            IS_B=own is B,
            **common,
        )
    dcum = vdv[1].sum(0) - vdv[0].sum(0)  # (B, L, H): C . dC - B . dB

    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    ddt = x.new_empty(batch, seqlen, nheads, dtype=torch.float32)
    dA = x.new_empty(batch, nchunks, nheads, dtype=torch.float32)
    dD = x.new_empty(batch, nchunks, nheads, headdim, dtype=torch.float32) if D is not None else None
    chunk_dx_kernel[(batch * nchunks, nheads)](
        x,
        dt,
        A,
        B,
        C,
        D,
        dt_bias,
        dy,
        dstates,
        dcum,
        dcum_end,
        dx,
        ddt,
        dA,
        dD,
        seqlen,
        nchunks,
        *_strides(x, dt, B, C),
        ngroups_b=B.shape[2],
        ngroups_c=C.shape[2],
        **_d_flags(D),
        **common,
    )
    dinit = dstates[:, 0].clone() if initial_state is not None else None
    return finish_grads((x, dt, A, B, C, D, dt_bias, initial_state), dx, ddt, dA, dB, dC, dD, dinit)
