"""Mamba-2 mixer: one scalar decay per head (SSD), B shared by groups of heads like GQA's keys.

New parameters (standard Mamba-2 init): dt_bias with softplus(dt_bias) log-uniform in [dt_min, dt_max],
A_log = log U[A_init_range] (A = -exp(A_log)), D = 1 per head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...ops import ssd_scan, ssd_step
from ..config import HybridConfig
from .mamba_base import MambaMixerBase, MambaOptions, init_from_attention, softplus_inverse_dt
from .registry import MixerSpec


@dataclass
class Mamba2Options(MambaOptions):
    A_init_range: tuple[float, float] = (1.0, 16.0)  # A = -U[lo, hi] per head

    def resolve(self, config: HybridConfig) -> None:
        super().resolve(config)
        self.A_init_range = tuple(self.A_init_range)
        if not 0 < self.A_init_range[0] <= self.A_init_range[1]:
            raise ValueError(f"A_init_range must be (lo, hi) with 0 < lo <= hi, got {self.A_init_range!r}")


class Mamba2Mixer(MambaMixerBase):
    def __init__(self, config: HybridConfig):
        super().__init__(config, dt_width=config.num_attention_heads)
        H = self.n_heads
        self.dt_bias = nn.Parameter(softplus_inverse_dt(H, config.options))  # (H,)
        self.A_log = nn.Parameter(torch.empty(H).uniform_(*config.options.A_init_range).log())  # (H,)
        self.D = nn.Parameter(torch.ones(H))  # (H,)

    def ssm(self, x, B, C, dt, state, use_cache):
        x = x.repeat_interleave(self.n_heads // self.n_kv_heads, dim=2)  # (B, T, H, P): GQA on activations
        A = -torch.exp(self.A_log.float())  # (H,)
        backend = self.config.scan_backend
        if state is not None and x.shape[1] == 1:  # decode: one recurrent step
            y, new_state = ssd_step(
                state, x[:, 0], dt[:, 0], A, B[:, 0], C[:, 0], self.D, self.dt_bias, dt_softplus=True, backend=backend
            )
            return y[:, None].flatten(2), new_state
        out = ssd_scan(
            x,
            dt,
            A,
            B,
            C,
            self.D,
            self.dt_bias,
            dt_softplus=True,
            initial_state=state,
            return_final_state=use_cache,
            backend=backend,
        )
        y, new_state = out if use_cache else (out, None)
        return y.flatten(2), new_state  # (B, T, H*P)


SPEC = MixerSpec("mamba2", Mamba2Mixer, Mamba2Options, init_from_attention)
