"""Start a Mamba mixer from the attention layer it replaces (the MambaInLlama table).

    C  <- W_Q  (H query heads)          x   <- W_V  (Hkv heads; repeated to H as an activation, not as weights)
    B  <- W_K  (Hkv groups, like GQA)   out <- W_O
z, dt, A, D and the conv keep their new-parameter init (see mamba_base / mamba2_mixer / mamba1_mixer).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import HybridConfig
from .mamba1_mixer import Mamba1Mixer
from .mamba2_mixer import Mamba2Mixer
from .mamba_base import MambaMixerBase

MIXER_CLASSES = {"mamba2": Mamba2Mixer, "mamba1": Mamba1Mixer}

# in_proj rows of the mixer <- projection of the attention module
ATTENTION_SOURCES = {"x": "v_proj", "B": "k_proj", "C": "q_proj"}


def make_mamba_mixer(config: HybridConfig) -> MambaMixerBase:
    return MIXER_CLASSES[config.mixer](config)


@torch.no_grad()
def init_from_attention(mixer: MambaMixerBase, attention: nn.Module) -> MambaMixerBase:
    """Copy q/k/v/o of `attention` (a HF LlamaAttention or our Attention) into `mixer`, in place."""
    for part, proj_name in ATTENTION_SOURCES.items():
        proj: nn.Linear = getattr(attention, proj_name)
        rows = mixer.in_proj_rows(part)
        mixer.in_proj.weight[rows].copy_(proj.weight)
        if proj.bias is not None:
            mixer.in_proj.bias[rows].copy_(proj.bias)
    mixer.out_proj.weight.copy_(attention.o_proj.weight)
    if attention.o_proj.bias is not None:
        mixer.out_proj.bias.copy_(attention.o_proj.bias)
    return mixer
