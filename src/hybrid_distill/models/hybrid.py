"""The hybrid decoder: Llama blocks whose sequence mixer is attention (A) or `config.mixer` (M), per `config.pattern`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm, LlamaRotaryEmbedding

from .allocation import ATTENTION
from .attention import Attention
from .cache import HybridCache, StaticCache
from .config import HybridConfig
from .hf_model import (
    HybridGenerationMixin,
    HybridPretrainedConfig,
    HybridPreTrainedModel,
    as_pretrained_config,
    check_forward_kwargs,
)
from .mixers import make_mixer


@dataclass
class HybridOutput(CausalLMOutputWithPast):
    """transformers' causal-LM output (logits (B, T, V) float32, None with return_hidden; cache: the HybridCache or
    StaticCache passed in, or made for use_cache=True, None without one) plus `hidden` (B, T, d): the final hidden
    states after the norm, with return_hidden (for a fused loss)."""

    cache: HybridCache | StaticCache | None = None  # transformers 5.17's CausalLMOutputWithPast has no such field
    hidden: torch.Tensor | None = None


class HybridBlock(GradientCheckpointingLayer):
    """Pre-norm Llama block: h + mixer(norm(h)), then h + mlp(norm(h)). Names follow HF so weights copy 1:1.
    intermediate_size 0: no MLP (nor its norm), as in the pure Mamba models of Waleffe et al. (2024).
    A GradientCheckpointingLayer, as HF's decoder layers are: lit/speed.py's activation checkpointing switches it on."""

    def __init__(self, config: HybridConfig, mlp_config, kind: str):
        super().__init__()
        self.kind = kind
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mixer = Attention(config) if kind == ATTENTION else make_mixer(config)
        self.post_attention_layernorm, self.mlp = None, None
        if config.intermediate_size > 0:
            self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
            self.mlp = LlamaMLP(mlp_config)

    def forward(self, hidden, rope, state=None, use_cache=False):
        mixed, new_state = self.mixer(self.input_layernorm(hidden), state=state, use_cache=use_cache, rope=rope)
        hidden = hidden + mixed
        if self.mlp is not None:
            hidden = hidden + self.mlp(self.post_attention_layernorm(hidden))
        return hidden, new_state


def check_right_padded(attention_mask: torch.Tensor | None) -> None:
    """Causal layers ignore right padding; left padding would shift real tokens behind pads, so refuse it."""
    if attention_mask is not None and bool((attention_mask[:, 1:] > attention_mask[:, :-1]).any()):
        raise ValueError(
            "attention_mask has padding before real tokens (left padding); the hybrid supports only right "
            "padding (a causal model needs no mask for it)"
        )


class HybridForCausalLM(HybridPreTrainedModel, HybridGenerationMixin):
    """A transformers PreTrainedModel (models/hf_model.py: config, `generate`, Auto classes, save/load)."""

    def __init__(self, config: HybridConfig | HybridPretrainedConfig):
        super().__init__(as_pretrained_config(config))
        config = self.config.hybrid  # the modules share it: model.config.scan_backend = ... reaches the mixers
        llama_config = config.to_llama_config()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(HybridBlock(config, llama_config, kind) for kind in config.pattern)
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.rotary_emb = LlamaRotaryEmbedding(llama_config)  # handles llama3 / yarn / ... rope_parameters

    def extra_repr(self) -> str:
        return f"pattern={self.config.pattern}, mixer={self.config.mixer}, scan_backend={self.config.scan_backend}"

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        cache: HybridCache | StaticCache | None = None,
        attention_mask: torch.Tensor | None = None,  # accepted for API compatibility; right padding only
        logits_to_keep: int = 0,  # > 0: logits of the last positions only (generation)
        return_hidden: bool = False,  # the final hidden states instead of logits (losses.fused_distill_loss)
        use_cache: bool | None = None,  # None: iff a cache is given; True without one: start a new cache
        return_dict: bool | None = None,  # False: a tuple (logits, cache), as transformers models return
        **hf_kwargs,  # what transformers' generate passes besides (their defaults only)
    ) -> HybridOutput:
        check_forward_kwargs(hf_kwargs)
        check_right_padded(attention_mask)
        if use_cache and cache is None:
            cache = self.new_cache()
        elif use_cache is False and cache is not None:
            raise ValueError("forward got a cache and use_cache=False; pass one or the other")
        T = input_ids.shape[1]
        hidden = self.embed_tokens(input_ids)  # (B, T, d)
        if cache is None:
            positions = torch.arange(T, device=input_ids.device)[None]  # (1, T)
        else:  # (1, T) in a HybridCache, (B, T) in a StaticCache (each row from its own length)
            positions = cache.positions(T, input_ids.device)
        rope = self.rotary_emb(hidden, positions)  # cos, sin: (1 or B, T, hd)
        for i, layer in enumerate(self.layers):
            state = cache.state(i) if cache is not None else None
            hidden, new_state = layer(hidden, rope, state=state, use_cache=cache is not None)
            if cache is not None:
                cache.store(i, new_state)
        if cache is not None:
            cache.advance(T)
        hidden = self.norm(hidden)
        if return_hidden:
            return HybridOutput(logits=None, cache=cache, hidden=hidden)
        if logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        out = HybridOutput(logits=self.lm_head(hidden).float(), cache=cache)
        return out if return_dict is not False else out.to_tuple()

    def new_cache(self) -> HybridCache:
        return HybridCache(len(self.layers))
