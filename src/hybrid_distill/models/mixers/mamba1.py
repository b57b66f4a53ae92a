"""Mamba-1 mixer: per-channel diagonal A over d_inner = H * head_dim channels.

B (from k_proj, Hkv groups) and C (from q_proj, H groups) are grouped so that channel (h, p) reads the B of KV
head h // (H / Hkv) and the C of query head h. dt is per channel through a low-rank projection, as in Mamba-1:
dt_rank rows of in_proj (like MambaInLlama's dt_proj_down, fed by the hidden state) then dt_proj (dt_rank -> d_inner)
whose bias is the softplus-inverse dt init. New parameters: A_log = log(1..N) per channel (S4D-real), D = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...ops import selective_scan, selective_step
from ..config import HybridConfig
from .mamba_base import MambaMixerBase, MambaOptions, init_from_attention, softplus_inverse_dt
from .registry import MixerSpec


@dataclass
class Mamba1Options(MambaOptions):
    gate_norm: bool = False
    dt_rank: int | str = "auto"  # rank of the dt projection; auto = ceil(hidden_size / 16)

    def resolve(self, config: HybridConfig) -> None:
        super().resolve(config)
        if self.dt_rank == "auto":
            self.dt_rank = -(-config.hidden_size // 16)
        if isinstance(self.dt_rank, bool) or not isinstance(self.dt_rank, int) or self.dt_rank < 1:
            raise ValueError(f"dt_rank must be 'auto' or a positive integer, got {self.dt_rank!r}")


class Mamba1Mixer(MambaMixerBase):
    def __init__(self, config: HybridConfig):
        rank = config.options.dt_rank
        super().__init__(config, dt_width=rank)
        d_inner, N = self.n_heads * self.head_dim, self.head_dim
        self.dt_proj = nn.Linear(rank, d_inner, bias=True)
        with torch.no_grad():
            std = rank**-0.5
            self.dt_proj.weight.uniform_(-std, std)
            self.dt_proj.bias.copy_(softplus_inverse_dt(d_inner, config.options))
        self.A_log = nn.Parameter(torch.arange(1, N + 1, dtype=torch.float32).log().repeat(d_inner, 1))  # (D, N)
        self.D = nn.Parameter(torch.ones(d_inner))  # (D,)

    def ssm(self, x, B, C, dt, state, use_cache):
        u = x.repeat_interleave(self.n_heads // self.n_kv_heads, dim=2).flatten(2).transpose(1, 2)  # (B, D, T)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # (B, D, T); bias is added inside the scan
        B = B.permute(0, 2, 3, 1)  # (B, Hkv, N, T)
        C = C.permute(0, 2, 3, 1)  # (B, H, N, T)
        A = -torch.exp(self.A_log.float())  # (D, N)
        backend = self.config.scan_backend
        if state is not None and u.shape[-1] == 1:  # decode: one recurrent step
            y, new_state = selective_step(
                state,
                u[..., 0],
                delta[..., 0],
                A,
                B[..., 0],
                C[..., 0],
                self.D,
                delta_bias=self.dt_proj.bias,
                delta_softplus=True,
                backend=backend,
            )
            return y[:, None], new_state
        out = selective_scan(
            u,
            delta,
            A,
            B,
            C,
            self.D,
            delta_bias=self.dt_proj.bias,
            delta_softplus=True,
            initial_state=state,
            return_final_state=use_cache,
            backend=backend,
        )
        y, new_state = out if use_cache else (out, None)
        return y.transpose(1, 2), new_state  # (B, T, D)


SPEC = MixerSpec("mamba1", Mamba1Mixer, Mamba1Options, init_from_attention)
