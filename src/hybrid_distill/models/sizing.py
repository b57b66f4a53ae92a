"""Architectures trained from scratch at an equal parameter count (the `scratch` stage; experiments/scratch/).

Four families, as in Waleffe et al. (2024, "An Empirical Study of Mamba-based Language Models"):

    transformer  every block attention + SwiGLU MLP
    hybrid       blocks of Mamba-2 or attention (which: `mamba_ratio`, allocation.layer_pattern), each with an MLP,
                 so MLPs sit between all mixers as in the paper's Mamba-2-Hybrid (as many MLPs as mixers)
    mamba2       Mamba-2 mixers only, no MLPs (the paper's pure SSM models have none)
    mamba1       Mamba-1 mixers only, no MLPs

How each reaches the target count (`size_architecture`), all at one hidden size and head size:
- with MLPs (transformer, hybrid): `num_layers` blocks with hidden / head_dim heads (attention is MHA; a hybrid's
  Mamba-2 layers then have expand 1, about as many parameters as the attention they stand for: 5 d^2 vs 4 d^2); the
  MLP width is solved for (rounded to a multiple of 8), so the families differ in the mixers, not in depth or width;
- without MLPs (mamba1, mamba2): depth, heads and head size are searched together (the layers' width is
  expand = heads * head_dim / hidden, kept within [1.25, 2.75], Mamba's default being 2; heads must divide hidden,
  which transformers' LlamaConfig checks; head_dim, which here is also the state size N, in steps of 16 within
  [head_dim / 2, 2 head_dim]): of the candidates within SIZE_TOLERANCE of the target, the one nearest expand 2
  and the requested head_dim, else the closest count. A Mamba layer stands for a mixer and an MLP of the
  others, so these models are deeper (about 1.2x at expand 2).
Mamba layers trained from scratch have one B and C per head (no groups: KV heads = heads).
Counts are exact (every candidate block is built on the meta device and counted); tied embeddings count once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .allocation import ATTENTION, MAMBA, layer_pattern
from .config import HybridConfig
from .hybrid import HybridBlock

ARCHITECTURES = {  # name -> (mixer of the M layers, has MLPs)
    "transformer": ("mamba2", True),
    "hybrid": ("mamba2", True),
    "mamba2": ("mamba2", False),
    "mamba1": ("mamba1", False),
}
EXPAND_RANGE = (1.25, 2.75)  # mixer width / hidden of the MLP-free models
SIZE_TOLERANCE = 0.01  # MLP-free models: candidates this close to the target count are equally good
HEAD_DIM_STEP = 16
MLP_MULTIPLE = 8


@dataclass(frozen=True)
class Sized:
    config: HybridConfig
    params: int
    target: int

    @property
    def error(self) -> float:
        """Relative distance to the target count."""
        return self.params / self.target - 1


def _config(
    pattern: str, hidden: int, heads: int, head_dim: int, intermediate: int, vocab: int, mixer: str, **extra
) -> HybridConfig:
    return HybridConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        head_dim=head_dim,
        pattern=pattern,
        tie_word_embeddings=True,
        mixer=mixer,
        init="random",
        **extra,
    )


def block_params(config: HybridConfig, kind: str) -> int:
    """Parameters of one block of `kind` (A or M), counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        block = HybridBlock(config, config.to_llama_config(), kind)
    return sum(p.numel() for p in block.parameters())


def count_params(config: HybridConfig) -> int:
    """Total parameters of a HybridForCausalLM of `config`: tied embedding + final norm + its blocks."""
    embeddings = config.vocab_size * config.hidden_size * (1 if config.tie_word_embeddings else 2)
    per_kind = {kind: block_params(config, kind) for kind in set(config.pattern)}
    return embeddings + config.hidden_size + sum(per_kind[kind] for kind in config.pattern)


def size_architecture(
    arch: str,
    target_params: int,
    hidden_size: int,
    num_layers: int,
    head_dim: int,
    vocab_size: int,
    mamba_ratio: float = 0.5,
    **extra,
) -> Sized:
    """The `arch` model closest to `target_params` parameters (module docstring); `mamba_ratio` only for `hybrid`;
    `extra`: HybridConfig fields (scan_backend, mixer options, ...)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if hidden_size % head_dim:
        raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of head_dim ({head_dim})")
    mixer, with_mlp = ARCHITECTURES[arch]
    if with_mlp:
        ratio = {"transformer": 0.0, "hybrid": mamba_ratio}[arch]
        pattern = layer_pattern(num_layers, ratio)
        return _solve_mlp(pattern, target_params, hidden_size, head_dim, vocab_size, mixer, extra)
    return _search_mamba(target_params, hidden_size, num_layers, head_dim, vocab_size, mixer, extra)


def _solve_mlp(pattern, target, hidden, head_dim, vocab, mixer, extra) -> Sized:
    """Params are linear in the MLP width: solve from two widths, round to a multiple of MLP_MULTIPLE."""
    heads = hidden // head_dim

    def total(width: int) -> int:
        return count_params(_config(pattern, hidden, heads, head_dim, width, vocab, mixer, **extra))

    low, high = MLP_MULTIPLE, 2 * MLP_MULTIPLE
    per_unit = (total(high) - total(low)) / (high - low)
    width = MLP_MULTIPLE * round((low + (target - total(low)) / per_unit) / MLP_MULTIPLE)
    if width < MLP_MULTIPLE:
        raise ValueError(
            f"{pattern}: {target:,} parameters leave no room for MLPs at hidden_size {hidden} and {len(pattern)} "
            f"layers ({total(low):,} with the narrowest MLP); lower hidden_size or num_layers"
        )
    config = _config(pattern, hidden, heads, head_dim, width, vocab, mixer, **extra)
    return Sized(config, count_params(config), target)


def _search_mamba(target, hidden, num_layers, head_dim, vocab, mixer, extra) -> Sized:
    """Depth, heads and head size of an MLP-free Mamba model (module docstring)."""
    best = None
    for size in range(max(HEAD_DIM_STEP, head_dim // 2), 2 * head_dim + 1, HEAD_DIM_STEP):
        for heads in (h for h in range(1, hidden + 1) if hidden % h == 0):
            expand = heads * size / hidden
            if not EXPAND_RANGE[0] <= expand <= EXPAND_RANGE[1]:
                continue
            config = _config(MAMBA, hidden, heads, size, 0, vocab, mixer, **extra)
            per_layer = block_params(config, MAMBA)
            fixed = count_params(config) - per_layer
            for layers in range(num_layers, 4 * num_layers + 1):
                error = abs(fixed + layers * per_layer - target) / target
                key = (max(error - SIZE_TOLERANCE, 0), abs(expand - 2) + abs(size - head_dim) / head_dim, error)
                if best is None or key < best[0]:
                    best = (key, heads, size, layers)
    _, heads, size, layers = best
    config = _config(MAMBA * layers, hidden, heads, size, 0, vocab, mixer, **extra)
    return Sized(config, count_params(config), target)


@torch.no_grad()
def init_from_scratch(model: nn.Module, std: float = 0.02) -> nn.Module:
    """GPT/Llama-style start for a model trained from scratch: every embedding and linear weight N(0, std), linear
    biases 0. Mamba's own parameters keep their init (A_log, D, dt_bias, the conv, and Mamba-1's dt_proj, whose bias
    is the dt init). PyTorch's defaults would give N(0, 1) embeddings, which the tied LM head turns into huge logits."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) or (isinstance(module, nn.Linear) and not name.endswith("dt_proj")):
            module.weight.normal_(0.0, std)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
    return model


def describe(sized: Sized) -> str:
    """One line: pattern, widths, count and distance to the target."""
    c = sized.config
    mixers = {ATTENTION: "attention", MAMBA: c.mixer}
    kinds = ", ".join(f"{c.pattern.count(k)} {mixers[k]}" for k in (ATTENTION, MAMBA) if k in c.pattern)
    return (
        f"{len(c.pattern)} layers ({kinds}), hidden {c.hidden_size}, {c.num_attention_heads} heads of {c.head_dim}, "
        f"MLP {c.intermediate_size or 'none'}: {sized.params:,} parameters ({sized.error:+.2%} vs {sized.target:,})"
    )
