"""Shared helpers for the models tests (no tests here): random tiny Llama teachers, built offline."""

from __future__ import annotations

import torch
import transformers

VOCAB = 64


def tiny_llama_config(**overrides) -> transformers.LlamaConfig:
    """4 layers, hidden 32, 4 query heads / 2 KV heads (GQA) of head_dim 8."""
    kwargs = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    kwargs.update(overrides)
    return transformers.LlamaConfig(**kwargs)


def make_teacher(seed: int = 0, **overrides) -> transformers.LlamaForCausalLM:
    torch.manual_seed(seed)
    teacher = transformers.LlamaForCausalLM(tiny_llama_config(**overrides)).eval()
    with torch.no_grad():  # HF zero-inits biases and sets norms to 1; randomise so the copies are really tested
        for name, p in teacher.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return teacher


def random_ids(batch: int = 2, length: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def perturb_(module: torch.nn.Module, scale: float = 0.05, seed: int = 2) -> None:
    """Stand-in for training: move every parameter of `module` a little."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.add_(scale * torch.randn(p.shape, generator=g).to(p.device, p.dtype))
