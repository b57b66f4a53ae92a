"""Mamba-2 SSD scan in its chunked matmul form (pure PyTorch, differentiable by autograd): the fast CPU path.

Same function as ssd_ref.ssd_scan_ref. The sequence is cut into chunks of Q steps; then
  1. inside a chunk, y is a masked (Q x Q) "attention" with decay weights exp(cum_t - cum_s);
  2. each chunk's contribution to the state is one (P x Q) @ (Q x N) product;
  3. the states are passed from chunk to chunk (a (c+1) x (c+1) decay matrix over the c chunks);
  4. each chunk reads its incoming state through C, decayed by exp(cum_t).
This is the "minimal SSD" of the Mamba-2 paper (Dao & Gu 2024, listing 1), extended with
D, dt_bias/softplus, initial state, separate B/C group counts and lengths that are not a multiple of Q.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .ssd_ref import _d_term, _prepare_dt, common_groups

DEFAULT_CHUNK_SIZE = 64


def segsum(a: torch.Tensor) -> torch.Tensor:
    """(..., T) -> (..., T, T) with out[i, j] = a[j+1] + ... + a[i] for i >= j and -inf above the diagonal.

    Summing masked copies (rather than differencing one cumsum) avoids cancellation in exp(out).
    """
    T = a.shape[-1]
    a = a[..., None].expand(*a.shape, T)  # (..., T, T): a[..., i, j] = a_i
    strict = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device), diagonal=-1)
    out = torch.cumsum(a.masked_fill(~strict, 0.0), dim=-2)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device))
    return out.masked_fill(~causal, float("-inf"))


def _pad_seq(t: torch.Tensor, pad: int) -> torch.Tensor:
    # pad dim 1 (the sequence) at the end with zeros: dt = 0 there means no decay and no input
    return F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) if pad else t


def ssd_scan_chunked(
    x: torch.Tensor,  # (B, L, H, P)
    dt: torch.Tensor,  # (B, L, H)
    A: torch.Tensor,  # (H,)
    B: torch.Tensor,  # (B, L, Gb, N)
    C: torch.Tensor,  # (B, L, Gc, N)
    D: torch.Tensor | None = None,  # (H,) or (H, P)
    dt_bias: torch.Tensor | None = None,  # (H,)
    dt_softplus: bool = False,
    initial_state: torch.Tensor | None = None,  # (B, H, P, N)
    return_final_state: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
):
    batch, length, nheads, headdim = x.shape
    dstate = B.shape[-1]
    Bg, Cg = common_groups(B.float(), C.float(), nheads, dim=2)  # (B, L, K, N) each
    K = Bg.shape[2]
    R = nheads // K  # heads per group: head h = k * R + r
    Q = chunk_size
    pad = (-length) % Q
    nchunks = (length + pad) // Q

    xf = x.float()
    dtp = _prepare_dt(dt, dt_bias, dt_softplus)  # (B, L, H)
    xdt = _pad_seq(xf * dtp[..., None], pad).view(batch, nchunks, Q, K, R, headdim)  # (B, c, Q, K, R, P)
    Bc = _pad_seq(Bg, pad).view(batch, nchunks, Q, K, dstate)  # (B, c, Q, K, N)
    Cc = _pad_seq(Cg, pad).view(batch, nchunks, Q, K, dstate)
    dA = (_pad_seq(dtp, pad) * A.float()).view(batch, nchunks, Q, K, R).permute(0, 3, 4, 1, 2)  # (B, K, R, c, Q)
    dA_cum = torch.cumsum(dA, dim=-1)  # (B, K, R, c, Q)

    # 1. intra-chunk output: y_t = sum_{s<=t} exp(cum_t - cum_s) (C_t . B_s) dt_s x_s
    CB = torch.einsum("bclkn,bcskn->bkcls", Cc, Bc)  # (B, K, c, Q, Q)
    scores = CB[:, :, None] * torch.exp(segsum(dA))  # (B, K, R, c, Q, Q)
    y = torch.einsum("bkrcls,bcskrp->bclkrp", scores, xdt)  # (B, c, Q, K, R, P)

    # 2. state each chunk adds, decayed to the chunk's end
    decay_in = torch.exp(dA_cum[..., -1:] - dA_cum).permute(0, 3, 4, 1, 2)  # (B, c, Q, K, R)
    chunk_states = torch.einsum("bcskn,bcskrp->bckrpn", Bc, xdt * decay_in[..., None])  # (B, c, K, R, P, N)

    # 3. pass states across chunks: state entering chunk z = sum_{c<z} decay(c -> z) * chunk_state_c
    if initial_state is None:
        start = xf.new_zeros(batch, 1, K, R, headdim, dstate)
    else:
        start = initial_state.float().view(batch, 1, K, R, headdim, dstate)
    chunk_states = torch.cat([start, chunk_states], dim=1)  # (B, c+1, K, R, P, N)
    decay_chunks = torch.exp(segsum(F.pad(dA_cum[..., -1], (1, 0))))  # (B, K, R, c+1, c+1)
    states = torch.einsum("bkrzc,bckrpn->bzkrpn", decay_chunks, chunk_states)  # (B, c+1, K, R, P, N)
    entering, final_state = states[:, :-1], states[:, -1]

    # 4. output from the state entering each chunk: y_t += exp(cum_t) S C_t
    decay_out = torch.exp(dA_cum).permute(0, 3, 4, 1, 2)  # (B, c, Q, K, R)
    y = y + torch.einsum("bclkn,bckrpn->bclkrp", Cc, entering) * decay_out[..., None]

    y = y.reshape(batch, nchunks * Q, nheads, headdim)[:, :length]
    y = (y + _d_term(D, xf)).to(x.dtype)
    if return_final_state:
        return y, final_state.reshape(batch, nheads, headdim, dstate)
    return y
