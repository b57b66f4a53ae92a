"""Launchers of the SSD Triton kernels and the autograd Function that joins forward and backward.

Layouts follow hybrid_distill.ops.ssd_ref: x (B, L, H, P), dt (B, L, H), A (H,), B (B, L, Gb, N),
C (B, L, Gc, N), D (H,) or (H, P), dt_bias (H,), states (B, H, P, N). Head h reads B group h // (H / Gb).
"""

from __future__ import annotations

import dataclasses

import torch
import triton

from . import ssd_chunked
from .launch import LaunchConfig, block, dot_precision, finish_grads, steps_contiguous
from .ssd_bwd import ssd_bwd_kernel
from .ssd_fwd import ssd_fwd_kernel
from .ssd_step import ssd_step_kernel


# module defaults, read at each call (experiments/kernels/bench.py sweeps alternatives by rebinding them)
# Chosen by the launch-configuration sweep of experiments/kernels/bench.py on an H100 (its README.md) at H=128, P=64, N=128.
# The backward's best differs with the number of (batch x head) programs: few (B=1) or many (B=8).
FWD_CONFIG = LaunchConfig(chunk=32, block_p=64, num_warps=4, num_stages=3)
BWD_CONFIG = LaunchConfig(chunk=32, num_warps=8, num_stages=2)
BWD_CONFIG_MANY = LaunchConfig(chunk=16, num_warps=4, num_stages=2)
BWD_MANY_PROGRAMS = 512
STATES_CONFIG = LaunchConfig(num_warps=8, num_stages=2)  # the backward's state recompute; its chunk is the backward's
SEGMENT_CHUNKS = 32  # chunks per segment of the segmented forward (1024 steps at chunk 32); not tuned on a GPU yet


def _scan_args(x, dt, B, C, chunk):
    """Sizes and strides shared by the forward and backward kernels: (positional, keyword) arguments."""
    batch, seqlen, nheads, headdim = x.shape
    positional = (
        seqlen,
        triton.cdiv(seqlen, chunk),
        x.stride(0),
        x.stride(1),
        dt.stride(0),
        dt.stride(1),
        B.stride(0),
        B.stride(1),
        C.stride(0),
        C.stride(1),
    )
    sizes = dict(
        nheads=nheads,
        headdim=headdim,
        dstate=B.shape[-1],
        ngroups_b=B.shape[2],
        ngroups_c=C.shape[2],
        EVEN_L=seqlen % chunk == 0,
        CHUNK=chunk,
        BLOCK_N=block(B.shape[-1]),
    )
    return positional, sizes


def ssd_forward(
    x,
    dt,
    A,
    B,
    C,
    D,
    dt_bias,
    initial_state,
    dt_softplus,
    *,
    compute_y=True,
    store_final=True,
    store_states=False,
    config: LaunchConfig | None = None,
    out: torch.Tensor | None = None,
):
    """Run ssd_fwd_kernel. Returns (y or None, final state (B, H, P, N) fp32 or None, chunk-entry states or None).

    y goes to `out` when given (contiguous, x's shape and dtype), else to a new tensor."""
    config = config or FWD_CONFIG
    batch, seqlen, nheads, headdim = x.shape
    dstate = B.shape[-1]
    positional, sizes = _scan_args(x, dt, B, C, config.chunk)
    nchunks = triton.cdiv(seqlen, config.chunk)
    block_p = min(config.block_p, block(headdim))
    y = (out if out is not None else torch.empty_like(x, memory_format=torch.contiguous_format)) if compute_y else None
    final = x.new_empty(batch, nheads, headdim, dstate, dtype=torch.float32) if store_final else None
    # entry states in the input dtype: the backward's dots read them in that precision anyway
    states = x.new_empty(batch, nchunks, nheads, headdim, dstate) if store_states else None
    grid = (triton.cdiv(headdim, block_p), batch * nheads)
    ssd_fwd_kernel[grid](
        x,
        dt,
        A,
        B,
        C,
        D,
        dt_bias,
        initial_state,
        y,
        final,
        states,
        *positional,
        **sizes,
        BLOCK_P=block_p,
        HAS_D=D is not None,
        D_PER_P=D is not None and D.dim() == 2,
        HAS_DT_BIAS=dt_bias is not None,
        DT_SOFTPLUS=dt_softplus,
        HAS_INIT=initial_state is not None,
        COMPUTE_Y=compute_y,
        STORE_FINAL=store_final,
        STORE_STATES=store_states,
        DOT_PRECISION=dot_precision(x.dtype),
        num_warps=config.num_warps,
        num_stages=config.num_stages,
    )
    return y, final, states


def ssd_backward(
    x, dt, A, B, C, D, dt_bias, initial_state, dt_softplus, dy, dfinal, config: LaunchConfig | None = None
):
    """Gradients (dx, ddt, dA, dB, dC, dD, ddt_bias, dinitial_state); None for absent inputs."""
    batch, seqlen, nheads, headdim = x.shape
    config = config or (BWD_CONFIG_MANY if batch * nheads >= BWD_MANY_PROGRAMS else BWD_CONFIG)
    dstate, gb, gc = B.shape[-1], B.shape[2], C.shape[2]
    positional, sizes = _scan_args(x, dt, B, C, config.chunk)
    # recompute the chunk-entry states (cheaper than keeping them from the forward pass)
    states_config = dataclasses.replace(STATES_CONFIG, chunk=config.chunk)
    _, _, states = ssd_forward(
        x,
        dt,
        A,
        B,
        C,
        D,
        dt_bias,
        initial_state,
        dt_softplus,
        compute_y=False,
        store_final=False,
        store_states=True,
        config=states_config,
    )
    f32 = dict(dtype=torch.float32, device=x.device)
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    ddt = torch.empty(batch, seqlen, nheads, **f32)
    dB = torch.zeros(batch, seqlen, gb, dstate, **f32)  # accumulated over heads with atomics
    dC = torch.zeros(batch, seqlen, gc, dstate, **f32)
    dA = torch.empty(batch, nheads, **f32)
    dD = torch.empty(batch, nheads, headdim, **f32) if D is not None else None
    dinit = torch.empty(batch, nheads, headdim, dstate, **f32)
    ssd_bwd_kernel[(batch * nheads,)](
        x,
        dt,
        A,
        B,
        C,
        D,
        dt_bias,
        states,
        dy,
        dfinal,
        dx,
        ddt,
        dB,
        dC,
        dA,
        dD,
        dinit,
        *positional,
        **sizes,
        BLOCK_P=block(headdim),
        HAS_D=D is not None,
        D_PER_P=D is not None and D.dim() == 2,
        HAS_DT_BIAS=dt_bias is not None,
        DT_SOFTPLUS=dt_softplus,
        HAS_DFINAL=dfinal is not None,
        DOT_PRECISION=dot_precision(x.dtype),
        num_warps=config.num_warps,
        num_stages=config.num_stages,
    )
    return finish_grads((x, dt, A, B, C, D, dt_bias, initial_state), dx, ddt, dA, dB, dC, dD, dinit)


def _sequential_forward(x, dt, A, B, C, D, dt_bias, initial_state, dt_softplus, return_final_state):
    y, final, _ = ssd_forward(x, dt, A, B, C, D, dt_bias, initial_state, dt_softplus, store_final=return_final_state)
    return y, final


def _chunked_forward(x, dt, A, B, C, D, dt_bias, initial_state, dt_softplus, return_final_state):
    return ssd_chunked.chunked_forward(x, dt, A, B, C, D, dt_bias, initial_state, dt_softplus)


def _segmented_forward(x, dt, A, B, C, D, dt_bias, initial_state, dt_softplus, return_final_state):
    """The sequential forward run on segments of SEGMENT_CHUNKS chunks in parallel, as if they were batch entries,
    each from the state entering it (local segment states, then a pass over segments: ssd_chunked.chunk_states).

    More programs than the sequential forward at batch 1 (segments x heads), for one extra read of x and B. Used
    where the segments can be batch entries of views: batch 1, or a length that is a multiple of the segment."""
    batch, seqlen = x.shape[:2]
    seg = FWD_CONFIG.chunk * SEGMENT_CHUNKS
    nseg, full = triton.cdiv(seqlen, seg), seqlen // seg * seg
    if nseg == 1 or (batch > 1 and full != seqlen):
        return _sequential_forward(x, dt, A, B, C, D, dt_bias, initial_state, dt_softplus, return_final_state)
    config = dataclasses.replace(ssd_chunked.CHUNKED_CONFIG, chunk=FWD_CONFIG.chunk)
    states, _ = ssd_chunked.chunk_states(
        x, dt, A, B, dt_bias, dt_softplus, initial_state, reverse=False, config=config, nsub=SEGMENT_CHUNKS
    )  # (B, nseg + 1, H, P, N) fp32
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    whole = full // seg

    def as_batch(t):  # (B, full, ...) -> (B * whole, seg, ...): a view for batch 1 or strides of a full tensor
        return t[:, :full].unflatten(1, (whole, seg)).flatten(0, 1)

    parts = [((as_batch(x), as_batch(dt), as_batch(B), as_batch(C)), states[:, :whole].flatten(0, 1), y[:, :full])]
    if full < seqlen:  # batch 1: the partial last segment, from the state entering it
        parts.append(((x[:, full:], dt[:, full:], B[:, full:], C[:, full:]), states[:, whole], y[:, full:]))
    for (xs, dts, Bs, Cs), init, out in parts:
        ssd_forward(xs, dts, A, Bs, Cs, D, dt_bias, init.contiguous(), dt_softplus, store_final=False, out=out)
    return y, states[:, -1].clone() if return_final_state else None


# the implementations of each pass: "sequential" walks all chunks in one program per (batch, head[, P block]),
# "chunked" runs the chunks in parallel around a short pass over chunk states (ssd_chunked.py), "segmented" (forward
# only) runs the sequential forward on segments in parallel around a pass over segment states
FORWARDS = {"sequential": _sequential_forward, "chunked": _chunked_forward, "segmented": _segmented_forward}
BACKWARDS = {"sequential": ssd_backward, "chunked": ssd_chunked.chunked_backward}


class SSDChunkScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, dt_bias, initial_state, dt_softplus, return_final_state, fwd, bwd):
        y, final = FORWARDS[fwd](x, dt, A, B, C, D, dt_bias, initial_state, dt_softplus, return_final_state)
        ctx.save_for_backward(x, dt, A, B, C, D, dt_bias, initial_state)
        ctx.dt_softplus = dt_softplus
        ctx.bwd = bwd
        return y, final

    @staticmethod
    def backward(ctx, dy, dfinal):
        x, dt, A, B, C, D, dt_bias, initial_state = ctx.saved_tensors
        dy = torch.zeros_like(x) if dy is None else dy.contiguous()
        dfinal = dfinal.contiguous() if dfinal is not None else None
        grads = BACKWARDS[ctx.bwd](x, dt, A, B, C, D, dt_bias, initial_state, ctx.dt_softplus, dy, dfinal)
        return (*grads, None, None, None, None)


def ssd_chunk_scan(
    x,
    dt,
    A,
    B,
    C,
    D=None,
    dt_bias=None,
    dt_softplus=False,
    initial_state=None,
    return_final_state=False,
    fwd="sequential",
    bwd="sequential",
):
    """Chunked SSD scan on the Triton kernels, differentiable in every tensor input.

    fwd and bwd pick each pass's kernels: "sequential" (one program walks all chunks) or "chunked" (chunks in
    parallel, then a short state pass); fwd also "segmented" (segments of chunks in parallel, each walked in order). Returns y (B, L, H, P) in x's dtype, and the final state (B, H, P, N) fp32
    if return_final_state.
    """
    for name, value, options in (("fwd", fwd, FORWARDS), ("bwd", bwd, BACKWARDS)):
        if value not in options:
            raise ValueError(f"ssd_chunk_scan: {name}={value!r}; choose one of {', '.join(options)}")
    x, dt = steps_contiguous(x), steps_contiguous(dt)
    # the dots need one operand type: B and C follow x (a cast autograd can see through)
    B, C = steps_contiguous(B.to(x.dtype)), steps_contiguous(C.to(x.dtype))
    A = A.contiguous()
    D = D.contiguous() if D is not None else None
    dt_bias = dt_bias.contiguous() if dt_bias is not None else None
    initial_state = initial_state.contiguous() if initial_state is not None else None
    y, final = SSDChunkScan.apply(x, dt, A, B, C, D, dt_bias, initial_state, dt_softplus, return_final_state, fwd, bwd)
    return (y, final) if return_final_state else y


@torch.no_grad()
def ssd_step(state, x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, out_state=None):
    """One decode step (no autograd). Returns (y (B, H, P), new state (B, H, P, N)).

    The new state goes to `out_state` (pass `state` itself to update in place), else to a new tensor.
    """
    batch, nheads, headdim = x.shape
    dstate = state.shape[-1]
    state, x, dt, B, C = (t.contiguous() for t in (state, x, dt, B, C))
    new_state = torch.empty_like(state) if out_state is None else out_state
    y = torch.empty_like(x)
    block_p = min(16, block(headdim))  # small tiles: many programs, few registers each
    grid = (triton.cdiv(headdim, block_p), batch * nheads)
    ssd_step_kernel[grid](
        state,
        x,
        dt,
        A,
        B,
        C,
        D,
        dt_bias,
        y,
        new_state,
        nheads=nheads,
        headdim=headdim,
        dstate=dstate,
        ngroups_b=B.shape[1],
        ngroups_c=C.shape[1],
        BLOCK_P=block_p,
        BLOCK_N=block(dstate),
        HAS_D=D is not None,
        D_PER_P=D is not None and D.dim() == 2,
        HAS_DT_BIAS=dt_bias is not None,
        DT_SOFTPLUS=dt_softplus,
    )
    return y, new_state
