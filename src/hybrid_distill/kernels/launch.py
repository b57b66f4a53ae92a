"""Launch settings and small host-side helpers shared by the launchers of the sequential and chunk-parallel kernels."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton


@dataclass(frozen=True)
class LaunchConfig:
    """Tile sizes and Triton launch options of one kernel (the benchmark sweeps these)."""

    chunk: int = 64  # steps per chunk
    block_p: int = 64  # head dims per tile (the sequential backward needs all of P in one program and ignores it)
    num_warps: int = 4
    num_stages: int = 2
    block_n: int = 64  # state dims per tile (chunk-parallel kernels only: the sequential ones hold all of N)


def block(n: int) -> int:
    # tl.dot needs every dimension >= 16; masks cover the padding
    return max(16, triton.next_power_of_2(n))


def dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs get exact fp32 dots (the tight parity tests); bf16/fp16 operands ignore this setting
    return "ieee" if dtype == torch.float32 else "tf32"


def steps_contiguous(t: torch.Tensor) -> torch.Tensor:
    """The kernels take strides for batch and sequence and need each step's slice contiguous; copy only if not."""
    return t if t[0, 0].is_contiguous() else t.contiguous()


def finish_grads(inputs, dx, ddt, dA, dB, dC, dD, dinit):
    """The gradients autograd gets, from the kernels' outputs: per-program partial sums of dA (..., H) and
    dD (..., H, P) reduced, dt_bias's gradient from ddt (B, L, H), each cast to its input's dtype; None where an
    input is absent. `inputs` = (x, dt, A, B, C, D, dt_bias, initial_state)."""
    _, dt, A, B, C, D, dt_bias, initial_state = inputs
    if D is not None:
        dD = dD.flatten(0, -3).sum(0)  # (H, P)
        dD = (dD if D.dim() == 2 else dD.sum(-1)).to(D.dtype)
    return (
        dx,
        ddt.to(dt.dtype),
        dA.flatten(0, -2).sum(0).to(A.dtype),
        dB.to(B.dtype),
        dC.to(C.dtype),
        dD,
        ddt.sum((0, 1)).to(dt_bias.dtype) if dt_bias is not None else None,
        dinit.to(initial_state.dtype) if initial_state is not None else None,
    )
