"""scan_backend=triton and triton_chunked: the project's own Triton kernels (`hybrid_distill.kernels`).

Mamba-2 SSD scan (forward and backward) and its decode step run on the own kernels: `triton` on the sequential
ones (one program walks all chunks), `triton_chunked` on the chunk-parallel ones (kernels/README.md). There is no own
Mamba-1 kernel: the selective scan routes to the torch_chunked form (selective_scan_chunked).
The kernels run on CUDA tensors, or on CPU tensors under the Triton interpreter (TRITON_INTERPRET=1).
"""

from __future__ import annotations

import functools
import os

import torch

from .selective_scan_chunked import selective_scan_chunked
from .selective_scan_ref import selective_step_ref
from .ssd_ref import ssd_step_ref

INSTALL_HINT = "It needs `pip install triton`, and CUDA tensors or TRITON_INTERPRET=1."


@functools.cache
def _kernels():
    """The own kernels package, or None without triton (it compiles them)."""
    try:
        from .. import kernels
    except ImportError:
        return None
    return kernels


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def is_available() -> bool:
    return (torch.cuda.is_available() or interpreted()) and _kernels() is not None


def ssd_scan(x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, initial_state=None, return_final_state=False):
    return _kernels().ssd_chunk_scan(x, dt, A, B, C, D, dt_bias, dt_softplus, initial_state, return_final_state)


def ssd_scan_chunked(
    x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, initial_state=None, return_final_state=False
):
    return _kernels().ssd_chunk_scan(
        x, dt, A, B, C, D, dt_bias, dt_softplus, initial_state, return_final_state, fwd="chunked", bwd="chunked"
    )


def ssd_step(state, x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False):
    tensors = (state, x, dt, A, B, C, D, dt_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        # the decode kernel has no backward; a differentiable step (rare: decoding runs under no_grad)
        # goes through the reference
        return ssd_step_ref(state, x, dt, A, B, C, D, dt_bias, dt_softplus)
    return _kernels().ssd_step(state, x, dt, A, B, C, D, dt_bias, dt_softplus)


selective_scan = selective_scan_chunked
selective_step = selective_step_ref
