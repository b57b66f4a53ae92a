"""Mamba-1 selective scan: the sequential pure-PyTorch reference (layout of mamba_ssm's selective_scan_fn).

Per channel d (state of size N, diagonal A):
    delta_t = softplus(delta_t + delta_bias)     (if delta_softplus)
    h_t     = exp(delta_t * A_d) * h_{t-1} + delta_t * B_t * u_t
    y_t     = C_t . h_t + D_d * u_t,  then y_t * silu(z_t) if z is given
B and C are (batch, G, N, L): channel d reads group d // (D_inner // G), as in mamba_ssm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .ssd_ref import expand_groups


def _grouped(t: torch.Tensor, dim_inner: int) -> torch.Tensor:
    # (B, N, L) means one group; returns (B, D, N, L) with a group per channel
    if t.dim() == 3:
        t = t[:, None]
    return expand_groups(t, dim_inner, dim=1)


def selective_scan_ref(
    u: torch.Tensor,  # (B, D, L)
    delta: torch.Tensor,  # (B, D, L)
    A: torch.Tensor,  # (D, N)
    B: torch.Tensor,  # (B, G, N, L) or (B, N, L)
    C: torch.Tensor,  # (B, G, N, L) or (B, N, L)
    D: torch.Tensor | None = None,  # (D,)
    z: torch.Tensor | None = None,  # (B, D, L)
    delta_bias: torch.Tensor | None = None,  # (D,)
    delta_softplus: bool = False,
    initial_state: torch.Tensor | None = None,  # (B, D, N)
    return_final_state: bool = False,
):
    dtype = u.dtype
    batch, dim, length = u.shape
    uf = u.float()
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    Bd = _grouped(B.float(), dim)  # (B, D, N, L)
    Cd = _grouped(C.float(), dim)  # (B, D, N, L)
    decay = torch.exp(delta[:, :, None, :] * A.float()[None, :, :, None])  # (B, D, N, L)
    state = initial_state.float() if initial_state is not None else uf.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(length):
        state = decay[..., t] * state + (delta[:, :, t] * uf[:, :, t])[..., None] * Bd[..., t]  # (B, D, N)
        ys.append((state * Cd[..., t]).sum(-1))  # (B, D)
    y = torch.stack(ys, dim=-1) if ys else uf.new_zeros(batch, dim, 0)  # (B, D, L)
    if D is not None:
        y = y + uf * D.float()[:, None]
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(dtype)
    return (y, state) if return_final_state else y


def selective_step_ref(
    state: torch.Tensor,  # (B, D, N)
    u: torch.Tensor,  # (B, D)
    delta: torch.Tensor,  # (B, D)
    A: torch.Tensor,  # (D, N)
    B: torch.Tensor,  # (B, G, N) or (B, N)
    C: torch.Tensor,  # (B, G, N) or (B, N)
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,  # (B, D)
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
):
    """One decode step. Returns (y (B, D), new_state (B, D, N)); the input state is not modified."""
    y, new_state = selective_scan_ref(
        u[..., None],
        delta[..., None],
        A,
        B[..., None],
        C[..., None],
        D,
        None if z is None else z[..., None],
        delta_bias,
        delta_softplus,
        initial_state=state,
        return_final_state=True,
    )
    return y[..., 0], new_state.to(state.dtype)
