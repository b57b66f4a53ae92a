"""Inference state of a hybrid: a KV cache for attention layers, each mixer's own state (e.g. MambaState) for the
others."""

from __future__ import annotations

from typing import NamedTuple

import torch


class AttentionState(NamedTuple):
    key: torch.Tensor  # (B, Hkv, S, hd), after RoPE
    value: torch.Tensor  # (B, Hkv, S, hd)


class HybridCache:
    """Per-layer states plus the number of tokens already consumed (the position offset for RoPE).

    Pass one instance to successive `model(input_ids, cache=cache)` calls: each call reads the states, runs its
    tokens and stores the new states in place. A layer's entry stays None until the layer has seen a token.
    States are replaced, never written into, so `list(cache.layers)` plus `cache.seqlen` is a snapshot to roll back to
    (e.g. keeping SSM states only at accepted positions in speculative decoding).
    """

    def __init__(self, num_layers: int):
        self.layers: list[tuple | None] = [None] * num_layers  # AttentionState or a mixer's NamedTuple state
        self.seqlen = 0

    def __repr__(self) -> str:
        return f"HybridCache(seqlen={self.seqlen}, layers={len(self.layers)})"
