"""Create a student from a HF Llama teacher, and convert more of a student's attention layers to Mamba."""

from __future__ import annotations

import torch
import transformers

from .allocation import ATTENTION, MAMBA, nested_pattern, resolve_pattern
from .config import HybridConfig
from .hybrid import HybridForCausalLM
from .mixers import make_mixer, mixer_spec


def build_student(
    teacher: transformers.LlamaForCausalLM,
    mamba_ratio: float | None = None,
    pattern: str | None = None,
    mixer: str = "mamba2",
    init: str = "attention",
    scan_backend: str = "auto",
    conv_init: str = "identity",
    **mixer_options,
) -> HybridForCausalLM:
    """A hybrid with the teacher's embeddings, norms, MLPs, LM head and kept attention layers; the `mixer` layers
    start from the teacher's attention weights (init="attention") or from the mixer's own init (init="random").
    Give exactly one of `mamba_ratio` (see allocation.layer_pattern) or `pattern` ("AMAM..."); `mixer_options` are
    the mixer's options (models/mixers/), any other name is refused."""
    pattern = resolve_pattern(_llama_config(teacher).num_hidden_layers, mamba_ratio, pattern)
    config = _student_config(
        teacher, pattern, mixer=mixer, init=init, scan_backend=scan_backend, conv_init=conv_init, **mixer_options
    )
    ref = teacher.get_input_embeddings().weight
    with torch.device(ref.device):
        student = HybridForCausalLM(config).to(config.dtype)
    _copy_teacher(student, teacher)
    return student


def _llama_config(teacher: transformers.LlamaForCausalLM) -> transformers.LlamaConfig:
    tcfg = teacher.config
    if getattr(tcfg, "model_type", None) != "llama":
        raise ValueError(f"teacher must be a Llama-architecture model (model_type 'llama'), got {tcfg.model_type!r}")
    return tcfg


def _student_config(teacher: transformers.LlamaForCausalLM, pattern: str, **kwargs) -> HybridConfig:
    dtype = teacher.get_input_embeddings().weight.dtype
    return HybridConfig.from_llama(_llama_config(teacher), pattern, dtype=dtype, **kwargs)


def teacher_as_student(teacher: transformers.LlamaForCausalLM) -> HybridForCausalLM:
    """The ratio-0 student (every layer attention) holding the teacher's own parameter tensors: no copy, the same
    outputs (tests/test_static_engine.py), so the teacher decodes on the student's engines (static caches, CUDA
    graphs). Changing one changes the other."""
    config = _student_config(teacher, ATTENTION * _llama_config(teacher).num_hidden_layers)
    with torch.device("meta"):  # no memory: every tensor is replaced by the teacher's below
        student = HybridForCausalLM(config)
    # HF names -> ours: model.layers.i.self_attn.* -> layers.i.mixer.*, model.* -> *
    shared = {
        name.removeprefix("model.").replace(".self_attn.", ".mixer."): tensor
        for name, tensor in teacher.state_dict(keep_vars=True).items()
    }
    student.load_state_dict(shared, strict=True, assign=True)
    if config.tie_word_embeddings:
        student.lm_head.weight = student.embed_tokens.weight
    student.rotary_emb = teacher.model.rotary_emb  # the same class, with its buffers on the teacher's device
    return student.train(teacher.training)


@torch.no_grad()
def _copy_teacher(student: HybridForCausalLM, teacher: transformers.LlamaForCausalLM) -> None:
    body = teacher.model
    student.embed_tokens.load_state_dict(body.embed_tokens.state_dict())
    student.norm.load_state_dict(body.norm.state_dict())
    if not student.config.tie_word_embeddings:
        student.lm_head.load_state_dict(teacher.lm_head.state_dict())
    for block, layer in zip(student.layers, body.layers):
        block.input_layernorm.load_state_dict(layer.input_layernorm.state_dict())
        block.post_attention_layernorm.load_state_dict(layer.post_attention_layernorm.state_dict())
        block.mlp.load_state_dict(layer.mlp.state_dict())
        if block.kind == ATTENTION:
            block.mixer.load_state_dict(layer.self_attn.state_dict())
        elif student.config.init == "attention":
            mixer_spec(student.config.mixer).init_from_attention(block.mixer, layer.self_attn)


def convert_student(
    student: HybridForCausalLM, mamba_ratio: float | None = None, pattern: str | None = None
) -> HybridForCausalLM:
    """Stepwise replacement, in place: attention layers that the new pattern marks M become new mixers initialised
    (per student.config.init) from the student's own attention weights; existing mixer layers are kept as trained.
    A mamba_ratio keeps attention only where the student has it (allocation.nested_pattern); an explicit pattern
    that would turn an M back into A is refused. Returns the same (modified) student."""
    old = student.config.pattern
    resolve_pattern(len(old), mamba_ratio, pattern)  # exactly one of the two, valid
    new = pattern if pattern is not None else nested_pattern(old, mamba_ratio)
    back = [i for i, (o, n) in enumerate(zip(old, new)) if o == MAMBA and n == ATTENTION]
    if back:
        raise ValueError(
            f"pattern {new!r} would turn Mamba layer(s) {back} of the student's pattern {old!r} back into attention"
        )
    student.config.pattern = new
    for i, (o, n) in enumerate(zip(old, new)):
        if o == n:
            continue
        block = student.layers[i]
        attention = block.mixer
        weight = attention.q_proj.weight
        with torch.device(weight.device):
            mixer = make_mixer(student.config).to(weight.dtype)
        if student.config.init == "attention":
            mixer_spec(student.config.mixer).init_from_attention(mixer, attention)
        block.mixer, block.kind = mixer, MAMBA
    return student
