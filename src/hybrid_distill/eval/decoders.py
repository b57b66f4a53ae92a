"""Incremental decoding with rollback, one interface for the hybrid and for HF causal LMs.

`feed(ids)` runs tokens through the model, continuing from everything fed before, and returns their logits.
`snapshot()` / `restore(s)` return the decoder to an earlier length, `rollback(s, kept)` to that length plus tokens
it had been fed after it: the eager hybrid keeps the old per-layer states (they are never written in place, see
models/cache.py) and reruns `kept`, a HF KV cache is cropped, the static hybrid copies its saved mixer states back
and reruns `kept` (only KV lengths move when it has no mixer). Speculative decoding rolls back rejected draft tokens
with them; the throughput bench uses feed for chunked prefill and single-token decode.

Engines (`make_decoder`): "eager" (HybridCache / HF DynamicCache, the reference), "static" (StaticCache, in place;
a HF Llama runs as the ratio-0 student sharing its weights) and "cuda-graph" (static, single-token steps replayed
from a CUDA graph).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache

from ..models import AttentionState, HybridForCausalLM, StaticCache, teacher_as_student
from ..models.hf_compat import CACHE_ARG
from ..models.static_engine import DecodeStep

ENGINES = ("eager", "static", "cuda-graph")


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

    def rollback(self, snapshot, kept: torch.Tensor) -> int:
        """Back to `snapshot` followed by `kept` (B, n), which were fed after it (among others); returns tokens rerun
        (recurrent states cannot drop the tokens after `kept`)."""
        self.restore(snapshot)
        if kept.shape[1]:
            self.feed(kept, logits_to_keep=1)
        return kept.shape[1]

    def state_bytes(self) -> int:
        """Memory held by the inference state: KV of attention layers, conv + SSM states of Mamba layers."""
        return _tensor_bytes(self.cache.layers)

    def recurrent_bytes(self) -> int:
        """The part of the state a decode step reads and rewrites whole: the mixers' (conv + SSM) states."""
        return _tensor_bytes([s for s in self.cache.layers if not isinstance(s, AttentionState)])


class StaticDecoder(HybridDecoder):
    """The hybrid on a StaticCache of `capacity` tokens per row: states written in place. Single tokens after the
    prompt go through DecodeStep (replayed from a CUDA graph when `cuda_graph`), whose logits tensor is reused: a
    feed's result is valid until the next feed."""

    def __init__(self, model: HybridForCausalLM, batch: int, capacity: int, cuda_graph: bool = False):
        self.model = model
        self.cache = StaticCache(model, batch, capacity)
        self.step = DecodeStep(model, self.cache, cuda_graph)

    @torch.no_grad()
    def feed(self, ids: torch.Tensor, logits_to_keep: int = 0) -> torch.Tensor:
        if ids.shape[1] == 1 and self.cache.seqlen > 0:
            return self.step(ids[:, 0])[:, None]  # (B, 1, V)
        return super().feed(ids, logits_to_keep)

    def snapshot(self) -> tuple:
        return self.cache.save()

    def restore(self, snapshot: tuple) -> None:
        self.cache.restore(snapshot)

    def rollback(self, snapshot, kept: torch.Tensor) -> int:
        if self.cache.mixer_buffers():
            return super().rollback(snapshot, kept)
        self.restore(snapshot)  # attention only: `kept` is still in the KV buffers, beyond the restored lengths
        self.cache.lengths += kept.shape[1]
        self.cache.seqlen += kept.shape[1]
        return 0

    def state_bytes(self) -> int:
        return self.cache.state_bytes()

    def recurrent_bytes(self) -> int:
        return _tensor_bytes(self.cache.mixer_buffers())


class HFDecoder:
    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.cache = DynamicCache(config=model.config)

    @property
    def length(self) -> int:
        return self.cache.get_seq_length()

    @torch.no_grad()
    def feed(self, ids: torch.Tensor, logits_to_keep: int = 0) -> torch.Tensor:
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=logits_to_keep, **{CACHE_ARG: self.cache})
        return out.logits.float()

    def snapshot(self) -> int:
        return self.length

    def rollback(self, length: int, kept: torch.Tensor) -> int:
        self.restore(length + kept.shape[1])
        return 0

    def restore(self, length: int) -> None:
        extra = self.length - length
        if extra < 0:
            raise ValueError(f"cannot restore a snapshot of {length} tokens: the cache holds only {self.length}")
        if extra:
            self.cache.crop(-extra)  # a negative argument removes that many tokens in every transformers 4.4x/5.x

    def recurrent_bytes(self) -> int:
        return 0

    def state_bytes(self) -> int:
        return sum(
            _tensor_bytes([layer.keys, layer.values])
            for layer in self.cache.layers
            if getattr(layer, "keys", None) is not None
        )


def make_decoder(
    model: torch.nn.Module, engine: str = "eager", batch: int | None = None, capacity: int | None = None
) -> HybridDecoder | HFDecoder:
    """A decoder for `model` on `engine` (see the module docstring); the static engines need the `batch` and the
    `capacity` (tokens per row) of their buffers."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if engine == "eager":
        return HybridDecoder(model) if isinstance(model, HybridForCausalLM) else HFDecoder(model)
    if batch is None or capacity is None:
        raise ValueError(f"engine {engine!r} needs the batch and the capacity (tokens per row) of its static cache")
    hybrid = model if isinstance(model, HybridForCausalLM) else teacher_as_student(model)
    return StaticDecoder(hybrid, batch, capacity, cuda_graph=engine == "cuda-graph")


def prefill(decoder: HybridDecoder | HFDecoder, ids: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Feed a prompt (B, T) in chunks of `chunk` tokens (None: at once); return the last position's logits (B, V).
    Chunking bounds the activation memory of long prompts; the states carry over exactly."""
    step = chunk or ids.shape[1]
    for start in range(0, ids.shape[1], step):
        logits = decoder.feed(ids[:, start : start + step], logits_to_keep=1)
    return logits[:, -1]
