"""FSDP wrap policy: each decoder layer of the teacher (HF Llama) and of the hybrid student is one unit."""

from __future__ import annotations

from transformers.models.llama.modeling_llama import LlamaDecoderLayer


def decoder_layer_classes() -> set[type]:
    from ..models.hybrid import HybridBlock

    return {LlamaDecoderLayer, HybridBlock}
