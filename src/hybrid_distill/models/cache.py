"""Inference state of a hybrid: a KV cache for attention layers, each mixer's own state (e.g. MambaState) for the
others. Two caches with one interface (`positions`, `state`, `store`, `advance`, what HybridForCausalLM.forward
calls):

- `HybridCache` (the eager reference): states are replaced, never written into; attention appends with torch.cat.
- `StaticCache` (the static engine, models/static_engine.py): buffers allocated once and written in place, per-row
  lengths on the device (right-padded batches), so that a decode step allocates no cache memory, never reads a
  value back to the host, and can be captured in a CUDA graph.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .allocation import ATTENTION


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

    def positions(self, T: int, device: torch.device) -> torch.Tensor:  # (1, T)
        return torch.arange(self.seqlen, self.seqlen + T, device=device)[None]

    def state(self, i: int):
        return self.layers[i]

    def store(self, i: int, state) -> None:
        self.layers[i] = state

    def advance(self, T: int) -> None:
        self.seqlen += T

    def __repr__(self) -> str:
        return f"HybridCache(seqlen={self.seqlen}, layers={len(self.layers)})"


class StaticKV(NamedTuple):
    """An attention layer's preallocated KV buffers; Attention writes the new keys at `cache.lengths` in place."""

    key: torch.Tensor  # (B, Hkv, capacity, hd), after RoPE
    value: torch.Tensor  # (B, Hkv, capacity, hd)
    cache: StaticCache  # for lengths (per row, on the device) and seqlen (on the host)


class StaticCache:
    """Fixed-size state for `batch` rows of up to `capacity` tokens each.

    Attention layers get KV buffers of the full capacity at construction; a mixer's state buffers are its first
    state (from the first block fed: its shapes are the mixer's business), kept and overwritten in place from then
    on (`store` copies). `lengths` (B,) counts each row's tokens on the device, so rows of a right-padded batch
    continue from their own last real token; `seqlen` (host) is the width of all blocks fed so far, an upper bound of
    every length. While `active` (B,) bool is set, only those rows advance and take new mixer states (the other rows
    keep theirs; their attention write lands beyond their length and is overwritten later).
    """

    def __init__(self, model, batch: int, capacity: int):
        if batch < 1 or capacity < 1:
            raise ValueError(f"a static cache needs batch >= 1 and capacity >= 1, got {batch} and {capacity}")
        config, weight = model.config, model.lm_head.weight
        self.batch, self.capacity = batch, capacity
        self.lengths = torch.zeros(batch, dtype=torch.long, device=weight.device)  # (B,)
        self.seqlen = 0
        self.active: torch.Tensor | None = None  # (B,) bool
        shape = (batch, config.num_key_value_heads, capacity, config.head_dim)
        self.layers: list[tuple | None] = [
            StaticKV(weight.new_zeros(shape), weight.new_zeros(shape), self) if layer.kind == ATTENTION else None
            for layer in model.layers
        ]

    def check_room(self, T: int) -> None:
        """Refuse `T` more tokens than the buffers hold (on the host: a scatter out of range on a GPU fails late)."""
        if self.seqlen + T > self.capacity:
            raise ValueError(
                f"static cache overflow: {self.seqlen} + {T} tokens exceed its capacity of {self.capacity}; "
                "build it with capacity >= prompt length + max_new_tokens"
            )

    def positions(self, T: int, device: torch.device | None = None) -> torch.Tensor:  # (B, T)
        self.check_room(T)
        return self.lengths[:, None] + torch.arange(T, device=self.lengths.device)

    def state(self, i: int):
        entry = self.layers[i]
        # a fresh sequence starts a mixer from its own initial state (None), whatever the buffers hold
        return None if self.seqlen == 0 and not isinstance(entry, StaticKV) else entry

    def store(self, i: int, state) -> None:
        held = self.layers[i]
        if isinstance(state, StaticKV):
            return  # written in place by Attention
        if held is None:  # first block: its (fresh) state becomes the buffers; clone drops views of larger tensors
            self.layers[i] = type(state)(*(t.clone() for t in state))
            return
        for buffer, new in zip(held, state):
            if self.active is not None:
                new = torch.where(self.active.view(-1, *[1] * (new.dim() - 1)), new, buffer)
            buffer.copy_(new)

    def advance(self, T: int) -> None:
        self.lengths += T if self.active is None else self.active.long() * T
        self.seqlen += T

    def reset(self) -> None:
        """Empty every row, keeping the buffers (and so any CUDA graph captured on them)."""
        self.lengths.zero_()
        self.seqlen = 0

    def mixer_buffers(self) -> list[torch.Tensor]:
        return [t for entry in self.layers if entry is not None and not isinstance(entry, StaticKV) for t in entry]

    def buffers(self) -> list[torch.Tensor]:
        """Every tensor the cache holds: KV buffers, mixer states, lengths."""
        kv = [t for entry in self.layers if isinstance(entry, StaticKV) for t in (entry.key, entry.value)]
        return [*kv, *self.mixer_buffers(), self.lengths]

    def save(self) -> tuple:
        """What `restore` needs to return here: lengths and mixer states (copies); KV beyond a length is ignored."""
        return self.lengths.clone(), self.seqlen, [t.clone() for t in self.mixer_buffers()]

    def restore(self, saved: tuple) -> None:
        lengths, self.seqlen, states = saved
        self.lengths.copy_(lengths)
        for buffer, value in zip(self.mixer_buffers(), states):
            buffer.copy_(value)

    def state_bytes(self) -> int:
        """Memory held by the buffers (KV at full capacity, conv and SSM states)."""
        return sum(t.numel() * t.element_size() for t in self.buffers()[:-1])

    def __repr__(self) -> str:
        return f"StaticCache(batch={self.batch}, capacity={self.capacity}, seqlen={self.seqlen})"
