"""Mamba-1 selective scan in a chunked parallel form (pure PyTorch, differentiable by autograd): the fast CPU path.

Same function as selective_scan_ref.selective_scan_ref. Mamba-1's decay exp(delta_t * A_dn) differs per
state entry (d, n), so SSD's matmul form does not apply; instead the linear recurrence
h_t = a_t h_{t-1} + b_t is solved as an associative scan:
  1. inside each chunk of Q steps, a Hillis-Steele scan (log2 Q doubling steps over all chunks at once);
  2. across the c chunk ends, the same scan gives the state entering each chunk (initial state folded in);
  3. every step adds its chunk's incoming state times the decay accumulated since the chunk start.
Only products of decays (<= 1) appear, so nothing overflows, unlike the exp(-cumsum) trick.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .selective_scan_ref import _grouped

DEFAULT_CHUNK_SIZE = 64


def linear_scan(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan of h_t = a_t h_{t-1} + b_t (h_{-1} = 0) along the last dim.

    Returns (a_1 * ... * a_t, h_t). Step k combines each element with the one 2^k before it.
    """
    length = a.shape[-1]
    shift = 1
    while shift < length:
        b = torch.cat([b[..., :shift], b[..., shift:] + a[..., shift:] * b[..., :-shift]], dim=-1)
        a = torch.cat([a[..., :shift], a[..., shift:] * a[..., :-shift]], dim=-1)
        shift *= 2
    return a, b


def selective_scan_chunked(
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
    chunk_size: int = DEFAULT_CHUNK_SIZE,
):
    batch, dim, length = u.shape
    dstate = A.shape[1]
    uf = u.float()
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    Q = chunk_size
    pad = (-length) % Q
    nchunks = (length + pad) // Q

    # padded steps: a = 1, b = 0 (delta = 0), so they leave the state unchanged
    a = torch.exp(delta[:, :, None, :] * A.float()[None, :, :, None])  # (B, D, N, L)
    b = (delta * uf)[:, :, None, :] * _grouped(B.float(), dim)  # (B, D, N, L)
    a = F.pad(a, (0, pad), value=1.0).view(batch, dim, dstate, nchunks, Q)
    b = F.pad(b, (0, pad)).view(batch, dim, dstate, nchunks, Q)

    decay, h_local = linear_scan(a, b)  # (B, D, N, c, Q): decay since chunk start, state from a zero start
    chunk_decay, chunk_end = decay[..., -1], h_local[..., -1]  # (B, D, N, c)
    if initial_state is not None:
        chunk_end = torch.cat(
            [chunk_end[..., :1] + chunk_decay[..., :1] * initial_state.float()[..., None], chunk_end[..., 1:]], dim=-1
        )
    _, ends = linear_scan(chunk_decay, chunk_end)  # (B, D, N, c): true state at each chunk end
    start = initial_state.float()[..., None] if initial_state is not None else ends.new_zeros(*ends.shape[:-1], 1)
    entering = torch.cat([start, ends[..., :-1]], dim=-1)  # (B, D, N, c)
    h = h_local + decay * entering[..., None]  # (B, D, N, c, Q)

    h = h.reshape(batch, dim, dstate, nchunks * Q)[..., :length]  # (B, D, N, L)
    y = (h * _grouped(C.float(), dim)).sum(dim=2)  # (B, D, L)
    if D is not None:
        y = y + uf * D.float()[:, None]
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(u.dtype)
    return (y, ends[..., -1]) if return_final_state else y
