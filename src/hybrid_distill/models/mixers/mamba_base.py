"""What the two Mamba mixers share: an attention-shaped in_proj, a causal depthwise conv, the gate, out_proj; their
common options, their cache state and their start from attention (the MambaInLlama table).

    in_proj(h) -> [z (H*P, only if gated), x (Hkv*P), B (Hkv*N), C (H*N), dt (dt_width)]
    [x, B, C] -> causal depthwise conv1d (kernel d_conv) -> activation
    y = SSM(x, B, C, dt)          (subclass: Mamba-2 SSD scan or Mamba-1 selective scan)
    y = gate(y, z) -> out_proj

x/B/C rows have the shapes of v_proj/k_proj/q_proj, so a mixer can start from the attention layer it replaces
(P = N = head_dim). x and B stay at the KV width (weights and conv); x is repeated to the query heads as an
activation, B is read per group by the scan, like GQA. init_from_attention copies

    C  <- W_Q  (H query heads)          x   <- W_V  (Hkv heads; repeated to H as an activation, not as weights)
    B  <- W_K  (Hkv groups, like GQA)   out <- W_O
z, dt, A, D and the conv keep their new-parameter init (here and in mamba2.py / mamba1.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import HybridConfig

CONV_ACTIVATIONS = ("silu", "identity")
# in_proj rows of the mixer <- projection of the attention module
ATTENTION_SOURCES = {"x": "v_proj", "B": "k_proj", "C": "q_proj"}


@dataclass
class MambaOptions:
    """Options of both Mamba mixers (each adds its own in its module)."""

    d_conv: int = 4
    conv_activation: str = "silu"
    gate: bool = True  # y * silu(z)
    gate_norm: bool = True  # gated RMSNorm per head after the gate (Mamba-1's default is False)
    dt_min: float = 1e-3
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4

    def resolve(self, config: HybridConfig) -> None:
        if self.conv_activation not in CONV_ACTIVATIONS:
            raise ValueError(
                f"conv_activation must be one of {', '.join(CONV_ACTIVATIONS)}; got {self.conv_activation!r}"
            )
        for key in ("gate", "gate_norm"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{key} must be true or false, got {getattr(self, key)!r}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={self.dt_min}, dt_max={self.dt_max}")
        if self.d_conv < 1:
            raise ValueError(f"d_conv must be >= 1, got {self.d_conv}")


class MambaState(NamedTuple):
    """What a Mamba layer caches between calls."""

    conv: torch.Tensor  # (B, C_conv, d_conv - 1): the last inputs of the causal conv
    ssm: torch.Tensor  # mamba2: (B, H, P, N); mamba1: (B, D_inner, N); float32


class GatedRMSNorm(nn.Module):
    """rmsnorm(y * silu(z)) over groups of `group_size` channels (Mamba-2's RMSNormGated, norm_before_gate=False)."""

    def __init__(self, dim: int, group_size: int, eps: float = 1e-5):
        super().__init__()
        self.group_size, self.eps = group_size, eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        g = (y.float() * F.silu(z.float())).unflatten(-1, (-1, self.group_size))  # (..., groups, group_size)
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + self.eps)
        return (g.flatten(-2) * self.weight.float()).to(y.dtype)


def softplus_inverse_dt(n: int, options: MambaOptions) -> torch.Tensor:
    """Bias b with softplus(b) log-uniform in [dt_min, dt_max] (floored at dt_init_floor): the standard Mamba dt init."""
    lo, hi = math.log(options.dt_min), math.log(options.dt_max)
    dt = torch.exp(torch.rand(n) * (hi - lo) + lo).clamp(min=options.dt_init_floor)
    return dt + torch.log(-torch.expm1(-dt))


class MambaMixerBase(nn.Module):
    def __init__(self, config: HybridConfig, dt_width: int):
        super().__init__()
        self.config = config  # shared with the model: scan_backend can be switched at runtime
        options: MambaOptions = config.options
        self.n_heads, self.n_kv_heads, self.head_dim = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim,
        )
        d_inner = self.n_heads * self.head_dim  # query width
        d_xb = self.n_kv_heads * self.head_dim  # key/value width
        self.sizes = {"z": d_inner if options.gate else 0, "x": d_xb, "B": d_xb, "C": d_inner, "dt": dt_width}
        self.in_proj = nn.Linear(config.hidden_size, sum(self.sizes.values()), bias=config.attention_bias)
        if self.in_proj.bias is not None:
            nn.init.zeros_(self.in_proj.bias)
        conv_dim = 2 * d_xb + d_inner
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, kernel_size=options.d_conv, groups=conv_dim, bias=True)
        if config.conv_init == "identity":  # the conv passes its input through until training changes it
            with torch.no_grad():
                self.conv1d.weight.zero_()
                self.conv1d.weight[:, 0, -1] = 1.0
                self.conv1d.bias.zero_()
        self.norm = GatedRMSNorm(d_inner, self.head_dim) if options.gate and options.gate_norm else None
        self.out_proj = nn.Linear(d_inner, config.hidden_size, bias=config.attention_bias)

    def in_proj_rows(self, name: str) -> slice:
        """Rows of in_proj.weight that emit `name` (z, x, B, C or dt)."""
        start = 0
        for key, size in self.sizes.items():
            if key == name:
                return slice(start, start + size)
            start += size
        raise KeyError(name)

    def _causal_conv(
        self,
        xBC: torch.Tensor,
        conv_state: torch.Tensor | None,  # (B, T, C), (B, C, K-1)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Depthwise causal conv continuing from `conv_state`; one path for training, prefill and decode."""
        bsz, T, channels = xBC.shape
        keep = self.config.options.d_conv - 1
        u = xBC.transpose(1, 2)  # (B, C, T)
        if conv_state is None:
            conv_state = u.new_zeros(bsz, channels, keep)
        u = torch.cat([conv_state.to(u.dtype), u], dim=-1)  # (B, C, K-1+T)
        y = F.conv1d(u, self.conv1d.weight, self.conv1d.bias, groups=channels)  # (B, C, T)
        if self.config.options.conv_activation == "silu":
            y = F.silu(y)
        return y.transpose(1, 2), u[..., u.shape[-1] - keep :]

    def ssm(self, x, B, C, dt, state, use_cache):
        """x (B,T,Hkv,P), B (B,T,Hkv,N), C (B,T,H,N), dt (B,T,dt_width) -> y (B,T,H*P), new SSM state or None."""
        raise NotImplementedError

    def forward(
        self,
        hidden: torch.Tensor,  # (B, T, d)
        state: MambaState | None = None,
        use_cache: bool = False,
        rope: object = None,  # unused: Mamba layers carry position in their state
    ) -> tuple[torch.Tensor, MambaState | None]:
        bsz, T, _ = hidden.shape
        s = self.sizes
        z, xBC, dt = torch.split(self.in_proj(hidden), [s["z"], s["x"] + s["B"] + s["C"], s["dt"]], dim=-1)
        xBC, conv_state = self._causal_conv(xBC, None if state is None else state.conv)
        x, B, C = torch.split(xBC, [s["x"], s["B"], s["C"]], dim=-1)
        y, ssm_state = self.ssm(
            x.unflatten(-1, (self.n_kv_heads, self.head_dim)),  # (B, T, Hkv, P)
            B.unflatten(-1, (self.n_kv_heads, self.head_dim)),  # (B, T, Hkv, N)
            C.unflatten(-1, (self.n_heads, self.head_dim)),  # (B, T, H, N)
            dt,
            None if state is None else state.ssm,
            use_cache,
        )  # (B, T, H*P)
        if self.norm is not None:
            y = self.norm(y, z)
        elif self.config.options.gate:
            y = y * F.silu(z)
        return self.out_proj(y), (MambaState(conv_state, ssm_state) if use_cache else None)


@torch.no_grad()
def init_from_attention(mixer: MambaMixerBase, attention: nn.Module) -> MambaMixerBase:
    """Copy q/k/v/o of `attention` (a HF LlamaAttention or our Attention) into `mixer`, in place."""
    for part, proj_name in ATTENTION_SOURCES.items():
        proj: nn.Linear = getattr(attention, proj_name)
        rows = mixer.in_proj_rows(part)
        mixer.in_proj.weight[rows].copy_(proj.weight)
        if proj.bias is not None:
            mixer.in_proj.bias[rows].copy_(proj.bias)
    mixer.out_proj.weight.copy_(attention.o_proj.weight)
    if attention.o_proj.bias is not None:
        mixer.out_proj.bias.copy_(attention.o_proj.bias)
    return mixer
