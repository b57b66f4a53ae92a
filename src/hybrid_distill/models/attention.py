"""Llama self-attention (GQA, RoPE, SDPA) with an explicit KV cache; weights load unchanged from the teacher."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from .cache import AttentionState, StaticKV
from .config import HybridConfig


class Attention(nn.Module):
    def __init__(self, config: HybridConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim,
        )
        d, bias = config.hidden_size, config.attention_bias
        self.q_proj = nn.Linear(d, self.n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d, bias=bias)

    def forward(
        self,
        hidden: torch.Tensor,  # (B, T, d)
        state: AttentionState | StaticKV | None = None,
        use_cache: bool = False,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,  # cos, sin: (1, T, hd) for positions past..past+T-1
    ) -> tuple[torch.Tensor, AttentionState | StaticKV | None]:
        bsz, T, _ = hidden.shape
        q = self.q_proj(hidden).view(bsz, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.k_proj(hidden).view(bsz, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        v = self.v_proj(hidden).view(bsz, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        q, k = apply_rotary_pos_emb(q, k, *rope)
        if isinstance(state, StaticKV):
            y = self._attend_static(q, k, v, state)  # (B, H, T, hd)
            return self.o_proj(y.transpose(1, 2).reshape(bsz, T, self.n_heads * self.head_dim)), state
        past = 0
        if state is not None:
            past = state.key.shape[2]
            k = torch.cat([state.key, k], dim=2)  # (B, Hkv, past + T, hd)
            v = torch.cat([state.value, v], dim=2)
        # causal with the query block aligned to the end of the keys; SDPA's is_causal aligns to the start
        mask = None
        if past and T > 1:
            mask = torch.arange(past + T, device=hidden.device) <= past + torch.arange(T, device=hidden.device)[:, None]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=past == 0 and T > 1, enable_gqa=self.n_kv_heads != self.n_heads
        )  # (B, H, T, hd)
        y = self.o_proj(y.transpose(1, 2).reshape(bsz, T, self.n_heads * self.head_dim))
        return y, (AttentionState(k, v) if use_cache else None)

    def _attend_static(self, q, k, v, state: StaticKV) -> torch.Tensor:  # q (B, H, T, hd), k/v (B, Hkv, T, hd)
        """Write k, v at each row's own positions, then attend over the buffer up to them."""
        cache = state.cache
        bsz, _, T, hd = k.shape
        positions = cache.positions(T)  # (B, T)
        index = positions[:, None, :, None].expand(bsz, self.n_kv_heads, T, hd)
        state.key.scatter_(2, index, k)
        state.value.scatter_(2, index, v)
        gqa = self.n_kv_heads != self.n_heads
        if cache.seqlen == 0:  # a first block: the eager prefill itself (right padding is trailing: causal suffices)
            return F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, enable_gqa=gqa)
        # a decode step reads the whole buffer (fixed shapes, so a CUDA graph can replay it); a block (chunked
        # prefill, speculative verification) the part written so far; key j is visible to the query at position p
        # of its row iff j <= p
        end = cache.capacity if T == 1 else cache.seqlen + T
        mask = torch.arange(end, device=k.device) <= positions[:, None, :, None]  # (B, 1, T, end)
        return F.scaled_dot_product_attention(
            q, state.key[:, :, :end], state.value[:, :, :end], attn_mask=mask, enable_gqa=gqa
        )
