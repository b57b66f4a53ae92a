"""Model FLOPs of a distillation step and of a plain training step (for MFU), and the MFU / peak-memory monitor that
logs them.

One distillation step over B sequences of T tokens costs, per token (multiply-add = 2 FLOPs; PaLM's convention:
attention over the full context, not halved for causality; embeddings are lookups, the LM head is a matmul):

    teacher forward            2 N_t + mix_t           (skipped when the divergence weight is 0)
    student forward            2 N_s + mix_s
    student backward, inputs   2 N_s + 2 mix_s         (gradients flow through every layer, frozen or not)
    student backward, weights  2 N_s,trainable
A plain training step of one model (stage sft_teacher) is the student's three lines for that model.

N = a model's parameters less its input embedding (a tied LM head counts once, as a matmul). mix = the sequence
mixing that has no parameters, per token: 4 T d_attn per attention layer (QK^T and AV, d_attn = heads x head_dim);
per Mamba-2 layer the chunked SSD scan, H (2 Q N + 2 Q P + 4 N P) with chunk length Q = min(T, 64), state N and
head width P (intra-chunk C B^T and its product with x, state update and read-out); per Mamba-1 layer
6 d_inner N (the selective scan's update and read-out).
"""

from __future__ import annotations

import time

import lightning as L
import torch
from lightning.fabric.utilities.throughput import get_available_flops
from lightning.pytorch.callbacks.throughput_monitor import _plugin_to_compute_dtype
from torch import nn

from ..models.allocation import ATTENTION

SSD_CHUNK = 64  # ops/ssd_chunked.DEFAULT_CHUNK_SIZE; the own Triton kernels use the same length
# bf16 dense peak of chips Lightning's table does not name (NVIDIA datasheets): "NVIDIA H200" is the SXM part
PEAK_BF16_FLOPS = {"nvidia h200": 989.4e12}


def matmul_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Parameters that take part in matmuls: all but the input embedding (unless it is tied to the LM head)."""
    if hasattr(model, "get_input_embeddings"):  # a transformers model
        embedding, head = model.get_input_embeddings().weight, model.get_output_embeddings()
    else:  # the hybrid student
        embedding, head = model.embed_tokens.weight, model.lm_head
    skip = set() if head is not None and head.weight is embedding else {id(embedding)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip and (p.requires_grad or not trainable_only))


def mixing_flops_per_token(pattern: str, config, seq_len: int) -> int:
    """Parameter-free sequence mixing of one forward pass, per token (see the module docstring). `config` holds
    num_attention_heads and head_dim (and mixer, for a hybrid's Mamba layers)."""
    heads, head_dim = config.num_attention_heads, config.head_dim
    attention = 4 * seq_len * heads * head_dim
    if getattr(config, "mixer", "mamba2") == "mamba1":
        mamba = 6 * heads * head_dim * head_dim  # d_inner = H * P channels, state N = head_dim
    else:
        q = min(seq_len, SSD_CHUNK)
        mamba = heads * (2 * q * head_dim + 2 * q * head_dim + 4 * head_dim * head_dim)
    return sum(attention if kind == ATTENTION else mamba for kind in pattern)


def layer_pattern(model: nn.Module) -> str:
    """The hybrid's pattern, or all attention for a transformers model."""
    return getattr(model.config, "pattern", None) or ATTENTION * model.config.num_hidden_layers


def forward_flops_per_token(model: nn.Module, seq_len: int) -> int:
    return 2 * matmul_params(model) + mixing_flops_per_token(layer_pattern(model), model.config, seq_len)


def training_flops_per_token(model: nn.Module, seq_len: int) -> int:
    """Forward, backward to the inputs of every layer, and the trainable weights' gradients (module docstring)."""
    mix = mixing_flops_per_token(layer_pattern(model), model.config, seq_len)
    return (
        forward_flops_per_token(model, seq_len)
        + 2 * matmul_params(model)
        + 2 * mix
        + 2 * matmul_params(model, trainable_only=True)
    )


def distill_flops_per_token(teacher: nn.Module, student: nn.Module, seq_len: int, with_teacher: bool = True) -> int:
    """FLOPs of one distillation step per token (module docstring)."""
    flops = training_flops_per_token(student, seq_len)
    return flops + forward_flops_per_token(teacher, seq_len) if with_teacher else flops


def peak_flops(device: torch.device, dtype: torch.dtype | str) -> float | None:
    """The device's dense peak for `dtype` (Lightning's table, then PEAK_BF16_FLOPS), None when unknown (e.g. CPU)."""
    known = get_available_flops(device, dtype)
    if known is not None or device.type != "cuda":
        return known
    return PEAK_BF16_FLOPS.get(torch.cuda.get_device_name(device).lower()) if "16" in str(dtype) else None


class MFUMonitor(L.Callback):
    """Logs train/flops_per_sec, train/mfu (when the device's peak is known) and train/peak_memory_gib every
    `every` steps, from the module's `flops_per_batch` of the step and the step's wall time (synchronised)."""

    def __init__(self, every: int = 10):
        self.every = every
        self._start = 0.0
        self._peak: float | None = None

    def on_fit_start(self, trainer, module) -> None:
        self._peak = peak_flops(module.device, _plugin_to_compute_dtype(trainer.precision_plugin))

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0:
            if module.device.type == "cuda":
                torch.cuda.synchronize(module.device)
                torch.cuda.reset_peak_memory_stats(module.device)
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        flops = getattr(module, "flops_per_batch", None)
        if (trainer.global_step - 1) % self.every or not flops:
            return
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
            module.log("train/peak_memory_gib", torch.cuda.max_memory_allocated(module.device) / 2**30)
        rate = flops / (time.perf_counter() - self._start)
        module.log("train/flops_per_sec", rate)
        if self._peak:
            module.log("train/mfu", rate / self._peak)
