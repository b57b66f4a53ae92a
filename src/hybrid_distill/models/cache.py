"""Inference state of a hybrid: a KV cache for attention layers, (conv, SSM) states for Mamba layers."""

from __future__ import annotations

from typing import NamedTuple

import torch


class AttentionState(NamedTuple):
    key: torch.Tensor  # (B, Hkv, S, hd), after RoPE
    value: torch.Tensor  # (B, Hkv, S, hd)


class MambaState(NamedTuple):
    conv: torch.Tensor  # (B, C_conv, d_conv - 1): the last inputs of the causal conv
    ssm: torch.Tensor  # mamba2: (B, H, P, N); mamba1: (B, D_inner, N); float32


class HybridCache:
    """Per-layer states plus the number of tokens already consumed (the position offset for RoPE).

    Pass one instance to successive `model(input_ids, cache=cache)` calls: each call reads the states, runs its
    tokens and stores the new states in place. A layer's entry stays None until the layer has seen a token.
    States are replaced, never written into, so `list(cache.layers)` plus `cache.seqlen` is a snapshot to roll back to
    (e.g. keeping SSM states only at accepted positions in speculative decoding).
    """

    def __init__(self, num_layers: int):
        self.layers: list[AttentionState | MambaState | None] = [None] * num_layers
        self.seqlen = 0

    def __repr__(self) -> str:
        return f"HybridCache(seqlen={self.seqlen}, layers={len(self.layers)})"
