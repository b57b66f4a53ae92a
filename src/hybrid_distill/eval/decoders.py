"""Incremental decoding with rollback, one interface for the hybrid and for HF causal LMs.

`feed(ids)` runs tokens through the model, continuing from everything fed before, and returns their logits.
`snapshot()` / `restore(s)` return the decoder to an earlier length: the hybrid keeps the old per-layer states
(they are never written in place, see models/cache.py), a HF KV cache is cropped. Speculative decoding rolls back
rejected draft tokens with them; the throughput bench uses feed for chunked prefill and single-token decode.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import DynamicCache

from ..models import HybridForCausalLM


def _tensor_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(o) for o in obj)
    return 0


class HybridDecoder:
    def __init__(self, model: HybridForCausalLM):
        self.model = model
        self.cache = model.new_cache()

    @property
    def length(self) -> int:
        return self.cache.seqlen

    @torch.no_grad()
    def feed(self, ids: torch.Tensor, logits_to_keep: int = 0) -> torch.Tensor:  # (B, T) -> (B, T or keep, V)
        return self.model(ids, cache=self.cache, logits_to_keep=logits_to_keep).logits

    def snapshot(self) -> tuple[list, int]:
        return list(self.cache.layers), self.cache.seqlen

    def restore(self, snapshot: tuple[list, int]) -> None:
        layers, seqlen = snapshot
        self.cache.layers, self.cache.seqlen = list(layers), seqlen

    def state_bytes(self) -> int:
        """Memory held by the inference state: KV of attention layers, conv + SSM states of Mamba layers."""
        return _tensor_bytes(self.cache.layers)


class HFDecoder:
    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.cache = DynamicCache(config=model.config)
        # transformers >= 5.2x names the argument `cache` (past_key_values is deprecated); older releases only know
        # past_key_values
        self.cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @property
    def length(self) -> int:
        return self.cache.get_seq_length()

    @torch.no_grad()
    def feed(self, ids: torch.Tensor, logits_to_keep: int = 0) -> torch.Tensor:
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=logits_to_keep, **{self.cache_arg: self.cache})
        return out.logits.float()

    def snapshot(self) -> int:
        return self.length

    def restore(self, length: int) -> None:
        extra = self.length - length
        if extra < 0:
            raise ValueError(f"cannot restore a snapshot of {length} tokens: the cache holds only {self.length}")
        if extra:
            self.cache.crop(-extra)  # a negative argument removes that many tokens in every transformers 4.4x/5.x

    def state_bytes(self) -> int:
        return sum(
            _tensor_bytes([layer.keys, layer.values])
            for layer in self.cache.layers
            if getattr(layer, "keys", None) is not None
        )


def make_decoder(model: torch.nn.Module) -> HybridDecoder | HFDecoder:
    return HybridDecoder(model) if isinstance(model, HybridForCausalLM) else HFDecoder(model)


def prefill(decoder: HybridDecoder | HFDecoder, ids: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Feed a prompt (B, T) in chunks of `chunk` tokens (None: at once); return the last position's logits (B, V).
    Chunking bounds the activation memory of long prompts; the states carry over exactly."""
    step = chunk or ids.shape[1]
    for start in range(0, ids.shape[1], step):
        logits = decoder.feed(ids[:, start : start + step], logits_to_keep=1)
    return logits[:, -1]
