"""scan_backend=mamba_ssm: adapters to mamba-ssm's kernels (CUDA only).

SSD scan: `mamba_chunk_scan_combined` (Triton); decode steps: `selective_state_update` (Triton);
Mamba-1 scan: `selective_scan_fn` (its compiled CUDA extension `selective_scan_cuda`).
mamba-ssm wants B and C with one group count, so ours are expanded to the lcm of theirs first.
"""

from __future__ import annotations

import functools

import torch

from .selective_scan_chunked import selective_scan_chunked
from .ssd_ref import common_groups

INSTALL_HINT = (
    "It needs a CUDA GPU and mamba-ssm: `pip install mamba-ssm causal-conv1d` (or `pip install -e '.[gpu]'`)."
)
CHUNK_SIZE = 256  # mamba_ssm.modules.mamba2.Mamba2's default


@functools.cache
def _triton_ops():
    try:
        import mamba_ssm  # noqa: F401  (available = the package itself imports, not only its Triton files)
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except ImportError:
        return None
    return mamba_chunk_scan_combined, selective_state_update


@functools.cache
def _selective_scan_fn():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError as err:  # needs the compiled selective_scan_cuda extension
        raise RuntimeError(f"mamba_ssm's selective_scan_fn is not importable ({err}). {INSTALL_HINT}") from err
    return selective_scan_fn


def is_available() -> bool:
    return torch.cuda.is_available() and _triton_ops() is not None


def ssd_scan(x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, initial_state=None, return_final_state=False):
    chunk_scan, _ = _triton_ops()
    B, C = common_groups(B, C, x.shape[2], dim=2)
    out = chunk_scan(
        x,
        dt,
        A,
        B,
        C,
        CHUNK_SIZE,
        D=D,
        dt_bias=dt_bias,
        initial_states=initial_state,
        dt_softplus=dt_softplus,
        return_final_states=return_final_state,
    )
    if return_final_state:
        y, final = out
        return y, final.float()  # mamba-ssm returns it in C's dtype; ours is fp32 like the reference
    return out


def ssd_step(state, x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False):
    _, state_update = _triton_ops()
    batch, nheads, headdim = x.shape
    dstate = state.shape[-1]
    B, C = common_groups(B, C, nheads, dim=1)
    # per-head scalars broadcast over (P, N) with stride 0: mamba-ssm detects that layout ("tie_hdim").
    # It dereferences dt_bias and D unconditionally, so absent ones become zeros.
    dt_bias = dt_bias if dt_bias is not None else A.new_zeros(nheads)
    D = D if D is not None else A.new_zeros(nheads)
    new_state = state.clone()  # state_update works in place; our API leaves the input state alone
    y = state_update(
        new_state,
        x,
        dt[..., None].expand(batch, nheads, headdim),
        A[:, None, None].expand(nheads, headdim, dstate),
        B,
        C,
        D=D if D.dim() == 2 else D[:, None].expand(nheads, headdim),
        dt_bias=dt_bias[:, None].expand(nheads, headdim),
        dt_softplus=dt_softplus,
    )
    return y, new_state


def selective_scan(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    initial_state=None,
    return_final_state=False,
):
    if initial_state is not None or (return_final_state and torch.is_grad_enabled()):
        # selective_scan_fn takes no initial state and passes no gradient through its final state
        return selective_scan_chunked(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, return_final_state
        )
    return _selective_scan_fn()(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_final_state)


def selective_step(state, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    _, state_update = _triton_ops()
    delta_bias = delta_bias if delta_bias is not None else A.new_zeros(A.shape[0])
    D = D if D is not None else A.new_zeros(A.shape[0])
    if B.dim() == 3 and B.shape[1] > 1:
        # mamba-ssm spreads B/C groups over heads, not channels: make each channel a head of size 1
        new_state = state[:, :, None].clone()  # (B, D, 1, N); state_update works in place, our API does not
        y = state_update(
            new_state,
            u[..., None],
            delta[..., None],
            A[:, None],
            B,
            C,
            D=D[:, None],
            z=None if z is None else z[..., None],
            dt_bias=delta_bias[:, None],
            dt_softplus=delta_softplus,
        )
        return y[..., 0], new_state[:, :, 0]
    new_state = state.clone()
    y = state_update(new_state, u, delta, A, B, C, D=D, z=z, dt_bias=delta_bias, dt_softplus=delta_softplus)
    return y, new_state
