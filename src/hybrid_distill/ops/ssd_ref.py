"""Mamba-2 SSD scan: the sequential pure-PyTorch reference (the oracle every fast backend is tested against).

Recurrence per head h (state S of shape (P, N)):
    dt_t   = softplus(dt_t + dt_bias)           (if dt_softplus)
    S_t    = exp(dt_t * A_h) * S_{t-1} + dt_t * x_t B_t^T
    y_t    = S_t C_t + D_h * x_t
B and C carry their own group counts (like GQA's KV heads): head h reads group h // (H // G).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _prepare_dt(dt: torch.Tensor, dt_bias: torch.Tensor | None, dt_softplus: bool) -> torch.Tensor:
    dt = dt.float()
    if dt_bias is not None:
        dt = dt + dt_bias.float()
    return F.softplus(dt) if dt_softplus else dt


def expand_groups(t: torch.Tensor, nheads: int, dim: int) -> torch.Tensor:
    """Repeat a grouped tensor along `dim` so that head h sees group h // (nheads // G)."""
    groups = t.shape[dim]
    if nheads % groups != 0:
        raise ValueError(f"number of heads ({nheads}) must be a multiple of the number of groups ({groups})")
    return t.repeat_interleave(nheads // groups, dim=dim) if groups != nheads else t


def common_groups(B: torch.Tensor, C: torch.Tensor, nheads: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Expand B and C to one shared group count (the lcm of theirs) along `dim`.

    Head h still reads group h // (nheads // G) of each: with G' = lcm, h // (H // G') // (G' // G) == h // (H // G).
    """
    groups = math.lcm(B.shape[dim], C.shape[dim])
    if nheads % groups != 0:
        raise ValueError(f"number of heads ({nheads}) must be a multiple of lcm(B groups, C groups) = {groups}")
    return expand_groups(B, groups, dim), expand_groups(C, groups, dim)


def _d_term(D: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | float:
    # x: (..., H, P); D: (H,) or (H, P)
    if D is None:
        return 0.0
    D = D.float()
    return x * (D[:, None] if D.dim() == 1 else D)


def ssd_scan_ref(
    x: torch.Tensor,  # (B, L, H, P)
    dt: torch.Tensor,  # (B, L, H)
    A: torch.Tensor,  # (H,)  negative decay rates
    B: torch.Tensor,  # (B, L, Gb, N)
    C: torch.Tensor,  # (B, L, Gc, N)
    D: torch.Tensor | None = None,  # (H,) or (H, P)
    dt_bias: torch.Tensor | None = None,  # (H,)
    dt_softplus: bool = False,
    initial_state: torch.Tensor | None = None,  # (B, H, P, N)
    return_final_state: bool = False,
):
    batch, length, nheads, headdim = x.shape
    dstate = B.shape[-1]
    dtype = x.dtype
    xf = x.float()
    dt = _prepare_dt(dt, dt_bias, dt_softplus)  # (B, L, H)
    Bh = expand_groups(B.float(), nheads, dim=2)  # (B, L, H, N)
    Ch = expand_groups(C.float(), nheads, dim=2)  # (B, L, H, N)
    decay = torch.exp(dt * A.float())  # (B, L, H)
    state = (
        initial_state.float() if initial_state is not None else xf.new_zeros(batch, nheads, headdim, dstate)
    )  # (B, H, P, N)
    ys = []
    for t in range(length):
        inp = (dt[:, t, :, None, None] * xf[:, t, :, :, None]) * Bh[:, t, :, None, :]  # (B, H, P, N)
        state = decay[:, t, :, None, None] * state + inp
        ys.append(torch.einsum("bhpn,bhn->bhp", state, Ch[:, t]))
    y = torch.stack(ys, dim=1) if ys else xf.new_zeros(batch, 0, nheads, headdim)  # (B, L, H, P)
    y = (y + _d_term(D, xf)).to(dtype)
    return (y, state) if return_final_state else y


def ssd_step_ref(
    state: torch.Tensor,  # (B, H, P, N)
    x: torch.Tensor,  # (B, H, P)
    dt: torch.Tensor,  # (B, H)
    A: torch.Tensor,  # (H,)
    B: torch.Tensor,  # (B, Gb, N)
    C: torch.Tensor,  # (B, Gc, N)
    D: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
):
    """One decode step. Returns (y (B, H, P), new_state (B, H, P, N)); the input state is not modified."""
    y, new_state = ssd_scan_ref(
        x[:, None],
        dt[:, None],
        A,
        B[:, None],
        C[:, None],
        D,
        dt_bias,
        dt_softplus,
        initial_state=state,
        return_final_state=True,
    )
    return y[:, 0], new_state.to(state.dtype)
