"""A hybrid student as transformers' stock `BambaForCausalLM` (Mamba-2 + attention, no custom code), and back.

Why the two compute the same function (transformers/models/bamba/modeling_bamba.py vs models/mixers/mamba_base.py,
models/mixers/mamba2.py, models/attention.py, models/hybrid.py):
- blocks: both are pre-norm, h + mixer(norm(h)), then h + SwiGLU(norm(h)); final norm, LM head (tied or not);
- Mamba in_proj emits [z, x, B, C, dt] in both; a depthwise causal conv (with bias) runs over [x, B, C], then
  silu (Bamba: `hidden_act`); dt = softplus(dt + dt_bias) unclamped (time_step_limit (0, inf)); A = -exp(A_log);
  y = scan + D * x per head; then rmsnorm(y * silu(z)) over groups of intermediate_size // n_groups channels with
  eps = rms_norm_eps, times the norm weight; out_proj. in_proj/out_proj biases are `attention_bias` in the student
  and `mamba_proj_bias` in Bamba;
- widths: Bamba's x is as wide as z and its B and C have n_groups groups of d_state. The student keeps x and B at
  the KV width (Hkv heads, GQA) and C per query head (H heads), with d_state = head_dim. So mamba_n_groups = H,
  mamba_d_state = mamba_d_head = head_dim, and the x and B rows of in_proj and conv channels are repeated from KV
  head k to query heads k*rep .. k*rep + rep - 1 (rep = H // Hkv): the student's own GQA order (x.repeat_interleave
  in Mamba2Mixer.ssm, head h reads B group h // rep in ops/ssd_ref.py). Each head then reads the same x, B, C;
- attention: Llama's GQA with SDPA and RoPE; Bamba hard-codes partial_rotary_factor 0.5 unless rope_parameters
  says otherwise, so the export writes 1.0 (full-width RoPE, as the teacher).
What cannot be held is refused by `check_exportable` with one error naming the option (FIXED, any mixer but mamba2
first, the gated norm eps, a HybridConfig field or mixer option not classified below, a tensor with no Bamba
counterpart), and so is a student without any
attention layer (transformers' hybrid cache needs one).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from transformers import AutoConfig, BambaConfig, BambaForCausalLM

from ..errors import UserError
from ..models import HybridConfig, HybridForCausalLM
from ..models.allocation import ATTENTION, MAMBA
from ..models.config import DTYPES

MODEL_TYPE = "bamba"
INIT_OPTIONS_KEY = "hybrid_distill_init_options"  # extra BambaConfig key: the student's init-only options

# HybridConfig fields and mixer options (as in config.json), by what the export does with them. One in none of these
# groups is refused: a new option may change what the student computes, so it has to be checked against Bamba's math
# and classified here.
CARRIED = frozenset(
    {
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "pattern",
        "rms_norm_eps",
        "max_position_embeddings",
        "rope_parameters",
        "attention_bias",
        "mlp_bias",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "d_conv",
        "torch_dtype",
    }
)
# options that Bamba computes one way only: field -> (the value it needs, why)
FIXED = {
    "mixer": (
        "mamba2",
        (
            "Bamba's mixers are Mamba-2 (one scalar decay per head); Mamba-1's per-channel A and "
            "low-rank dt have no counterpart in it"
        ),
    ),
    "gate": (True, "Bamba always multiplies the scan output by silu(z)"),
    "gate_norm": (True, "Bamba always applies its grouped RMSNorm to the gated output"),
    "conv_activation": ("silu", "Bamba applies hidden_act (silu) after the conv"),
    "hidden_act": (
        "silu",
        ("Bamba uses hidden_act both in the MLP and after the Mamba conv, where the student uses silu"),
    ),
}
# options that only choose initial values (a trained student's weights carry their effect); stored in the export's
# config so that an imported student converts further layers (stepwise) the way it was made (dt_rank: Mamba-1's, in
# a student without Mamba layers; the import, a Mamba-2 student, drops it)
INIT_ONLY = ("init", "conv_init", "dt_min", "dt_max", "dt_init_floor", "A_init_range", "dt_rank")
RUNTIME = frozenset({"scan_backend"})

IN_PROJ_PARTS = ("z", "x", "B", "C", "dt")  # in_proj rows, in this order in both models
CONV_PARTS = ("x", "B", "C")  # conv channels
REPEATED = frozenset({"x", "B"})  # KV width in the student, query width in Bamba
WIDENED = {
    "in_proj.weight": IN_PROJ_PARTS,
    "in_proj.bias": IN_PROJ_PARTS,
    "conv1d.weight": CONV_PARTS,
    "conv1d.bias": CONV_PARTS,
}
MIXER_NAMES = {ATTENTION: "self_attn", MAMBA: "mamba"}
# tensor names (student, Bamba); {i} a layer index, {p} the rest of the name, {mixer} self_attn or mamba
NAMES = (
    ("embed_tokens.{p}", "model.embed_tokens.{p}"),
    ("norm.{p}", "model.final_layernorm.{p}"),
    ("lm_head.{p}", "lm_head.{p}"),
    ("layers.{i}.input_layernorm.{p}", "model.layers.{i}.input_layernorm.{p}"),
    ("layers.{i}.post_attention_layernorm.{p}", "model.layers.{i}.pre_ff_layernorm.{p}"),
    ("layers.{i}.mlp.{p}", "model.layers.{i}.feed_forward.{p}"),
    ("layers.{i}.mixer.{p}", "model.layers.{i}.{mixer}.{p}"),
)


def _regex(template: str) -> re.Pattern:
    fields = {"i": r"(?P<i>\d+)", "p": r"(?P<p>.+)", "mixer": r"(?P<mixer>self_attn|mamba)"}
    return re.compile(re.sub(r"\\\{(\w+)\\\}", lambda m: fields[m.group(1)], re.escape(template)))


_TO_BAMBA = [(_regex(ours), theirs) for ours, theirs in NAMES]
_TO_STUDENT = [(_regex(theirs), ours) for ours, theirs in NAMES]


def _rename(key: str, rules, pattern: str) -> tuple[str, str | None, str]:
    """(new name, layer kind or None, rest of the name) of `key` under `rules`; a name no rule knows is refused."""
    for regex, template in rules:
        m = regex.fullmatch(key)
        if m is None:
            continue
        fields = m.groupdict()
        kind = pattern[int(fields["i"])] if "i" in fields else None
        if "mixer" in fields and fields["mixer"] != MIXER_NAMES[kind]:
            continue
        return template.format(**{**fields, "mixer": MIXER_NAMES.get(kind)}), kind, fields["p"]
    raise UserError(
        f"tensor {key} has no counterpart in {'Bamba' if rules is _TO_BAMBA else 'the student'}; "
        "the export does not know this parameter"
    )


# --- config --------------------------------------------------------------------------------------------------------
def check_exportable(student: HybridForCausalLM) -> None:
    """Raise one UserError naming the first student option (or tensor) that Bamba cannot hold exactly."""
    config = student.config
    values = config.to_dict()
    uses_mamba = MAMBA in config.pattern
    for key, (needed, why) in FIXED.items():  # the mixer first: another mixer's options are not Bamba's
        if uses_mamba and values[key] != needed:
            raise UserError(
                f"student option {key}={values[key]!r} cannot be exported to Bamba: {why} (needs {key}={needed!r})"
            )
    unknown = sorted(set(values) - CARRIED - set(FIXED) - set(INIT_ONLY) - RUNTIME)
    if unknown:
        raise UserError(
            f"student option {unknown[0]}={values[unknown[0]]!r} is unknown to the Bamba export "
            "(it may change what the student computes); classify it in hybrid_distill/export/bamba.py"
        )
    if config.intermediate_size == 0:
        raise UserError(
            "intermediate_size=0 (blocks without MLP) cannot be exported to Bamba: every Bamba layer has one"
        )
    if ATTENTION not in config.pattern:
        raise UserError(
            f"pattern {config.pattern!r} has no attention layer: transformers' Bamba cannot run it with a "
            "cache (its DynamicCache counts the sequence length in attention layers only), so generate() "
            "fails; keep at least one attention layer (mamba_ratio < 1, or student.pattern)"
        )
    width = config.num_attention_heads * config.head_dim
    if width % config.hidden_size:
        raise UserError(
            f"num_attention_heads * head_dim = {width} is not a multiple of hidden_size "
            f"{config.hidden_size}: Bamba's Mamba width is mamba_expand * hidden_size"
        )
    expected = student_widths(config)
    for i, block in enumerate(student.layers):
        if block.kind != MAMBA:
            continue
        mixer = block.mixer
        if dict(mixer.sizes) != expected:
            raise UserError(
                f"layer {i}: Mamba in_proj parts {dict(mixer.sizes)} differ from {expected}, the "
                "layout the Bamba export maps"
            )
        if not math.isclose(mixer.norm.eps, config.rms_norm_eps, rel_tol=1e-6):  # GGUF stores 1e-5 as float32
            raise UserError(
                f"layer {i}: the gated RMSNorm eps {mixer.norm.eps} differs from rms_norm_eps "
                f"{config.rms_norm_eps}; Bamba uses rms_norm_eps for both"
            )


def student_widths(config: HybridConfig) -> dict[str, int]:
    """Rows of the student's Mamba in_proj per part (z, x, B, C, dt)."""
    q, kv = config.num_attention_heads * config.head_dim, config.num_key_value_heads * config.head_dim
    return {"z": q, "x": kv, "B": kv, "C": q, "dt": config.num_attention_heads}


def added_parameters(config: HybridConfig) -> int:
    """What repeating x and B to the query width adds: per Mamba layer, 2 (H - Hkv) head_dim rows of in_proj
    (weight, and bias with attention_bias) and as many conv channels (d_conv taps + bias)."""
    rows = 2 * (config.num_attention_heads - config.num_key_value_heads) * config.head_dim
    per_row = config.hidden_size + config.attention_bias + config.options.d_conv + 1
    return config.pattern.count(MAMBA) * rows * per_row


def to_bamba_config(config: HybridConfig) -> BambaConfig:
    heads, head_dim = config.num_attention_heads, config.head_dim
    values = config.to_dict()
    return BambaConfig(
        architectures=[BambaForCausalLM.__name__],  # what serving engines (vLLM, TGI) pick the model class by
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=heads,
        num_key_value_heads=config.num_key_value_heads,
        head_dim=head_dim,
        hidden_act=config.hidden_act,
        rms_norm_eps=config.rms_norm_eps,
        max_position_embeddings=config.max_position_embeddings,
        rope_parameters={"partial_rotary_factor": 1.0, **config.rope_parameters},
        attention_bias=config.attention_bias,
        mlp_bias=config.mlp_bias,
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        attn_layer_indices=[i for i, kind in enumerate(config.pattern) if kind == ATTENTION],
        mamba_n_heads=heads,
        mamba_d_head=head_dim,
        mamba_n_groups=heads,
        mamba_d_state=head_dim,
        mamba_d_conv=config.options.d_conv,
        mamba_expand=heads * head_dim // config.hidden_size,
        mamba_conv_bias=True,
        mamba_proj_bias=config.attention_bias,
        time_step_limit=(0.0, math.inf),
        dtype=config.torch_dtype,
        **{INIT_OPTIONS_KEY: {key: values[key] for key in INIT_ONLY if key in values}},
    )


def from_bamba_config(bamba: BambaConfig, source: str, scan_backend: str, dtype_name: str) -> HybridConfig:
    """The student config of a Bamba model this module exported; a Bamba model it cannot hold is refused."""
    heads = bamba.num_attention_heads
    head_dim = getattr(bamba, "head_dim", None) or bamba.hidden_size // heads
    rope = dict(bamba.rope_parameters)
    needs = {
        "mamba_n_heads": heads,
        "mamba_d_head": head_dim,
        "mamba_d_state": head_dim,
        "mamba_n_groups": heads,
        "mamba_expand": heads * head_dim // bamba.hidden_size,
        "mamba_conv_bias": True,
        "mamba_proj_bias": bamba.attention_bias,
        "time_step_limit": (0.0, math.inf),
        "hidden_act": "silu",
    }
    found = {**{key: getattr(bamba, key) for key in needs}, "time_step_limit": tuple(bamba.time_step_limit or ())}
    wrong = [f"{key}={found[key]!r} (needs {needed!r})" for key, needed in needs.items() if found[key] != needed]
    if rope.pop("partial_rotary_factor", 1.0) != 1.0:
        wrong.append("rope_parameters.partial_rotary_factor (needs 1.0: the student rotates the full head)")
    if wrong:
        raise UserError(f"{source}: this Bamba model has no hybrid_distill student form: {'; '.join(wrong)}")
    pattern = "".join(ATTENTION if t == "full_attention" else MAMBA for t in bamba.layers_block_type)
    init_options = getattr(bamba, INIT_OPTIONS_KEY, None) or {}
    try:  # from_dict drops the init options a Mamba-2 student does not take (dt_rank)
        return HybridConfig.from_dict(
            dict(
                vocab_size=bamba.vocab_size,
                hidden_size=bamba.hidden_size,
                intermediate_size=bamba.intermediate_size,
                num_attention_heads=heads,
                num_key_value_heads=bamba.num_key_value_heads,
                head_dim=head_dim,
                pattern=pattern,
                hidden_act=bamba.hidden_act,
                rms_norm_eps=bamba.rms_norm_eps,
                max_position_embeddings=bamba.max_position_embeddings,
                rope_parameters=rope,
                attention_bias=bamba.attention_bias,
                mlp_bias=bamba.mlp_bias,
                tie_word_embeddings=bamba.tie_word_embeddings,
                bos_token_id=bamba.bos_token_id,
                eos_token_id=bamba.eos_token_id,
                pad_token_id=bamba.pad_token_id,
                mixer="mamba2",
                d_conv=bamba.mamba_d_conv,
                conv_activation="silu",
                gate=True,
                gate_norm=True,
                scan_backend=scan_backend,
                torch_dtype=dtype_name,
                **{key: init_options[key] for key in INIT_ONLY if key in init_options},
            ),
            source,
        )
    except ValueError as err:
        raise UserError(str(err)) from err


# --- weights -------------------------------------------------------------------------------------------------------
def _head_blocks(t: torch.Tensor, head_dim: int) -> torch.Tensor:
    return t.unflatten(0, (-1, head_dim))  # (heads, head_dim, ...)


def widen(t: torch.Tensor, parts: tuple[str, ...], widths: dict[str, int], head_dim: int, rep: int) -> torch.Tensor:
    """Student rows (dim 0) of `parts` -> Bamba rows: each x and B head repeated `rep` times, in place."""
    pieces = torch.split(t, [widths[p] for p in parts])
    return torch.cat(
        [
            _head_blocks(x, head_dim).repeat_interleave(rep, 0).flatten(0, 1) if p in REPEATED else x
            for p, x in zip(parts, pieces)
        ]
    )


def narrow(
    t: torch.Tensor, parts: tuple[str, ...], widths: dict[str, int], head_dim: int, rep: int, name: str
) -> torch.Tensor:
    """Inverse of `widen`; the `rep` copies of each x and B head must still be equal (else UserError naming it)."""
    wide = {p: widths[p] * rep if p in REPEATED else widths[p] for p in parts}
    pieces = []
    for p, x in zip(parts, torch.split(t, [wide[p] for p in parts])):
        if p in REPEATED:
            copies = _head_blocks(x, head_dim).unflatten(0, (-1, rep))  # (kv heads, rep, head_dim, ...)
            if not torch.equal(copies, copies[:, :1].expand_as(copies)):
                raise UserError(
                    f"{name}: the {p} rows of query heads that share a KV head differ, so this Bamba "
                    f"model has no student form (the student keeps {p} at the KV width); it was "
                    "probably trained after export"
                )
            x = copies[:, 0].flatten(0, 1)
        pieces.append(x)
    return torch.cat(pieces)


def to_bamba_state(student: HybridForCausalLM) -> dict[str, torch.Tensor]:
    """The student's tensors under Bamba's names and shapes (the tied LM head omitted, as transformers saves it)."""
    config = student.config
    widths, rep = student_widths(config), config.num_attention_heads // config.num_key_value_heads
    state = {}
    for key, value in student.state_dict().items():
        if key == "lm_head.weight" and config.tie_word_embeddings:
            continue
        name, kind, rest = _rename(key, _TO_BAMBA, config.pattern)
        value = value.detach().cpu()
        if kind == MAMBA and rest in WIDENED:
            value = widen(value, WIDENED[rest], widths, config.head_dim, rep)
        state[name] = value.contiguous()
    _check_against_bamba(state, to_bamba_config(config))
    return state


def _check_against_bamba(state: dict[str, torch.Tensor], bamba: BambaConfig) -> None:
    """Every tensor of a stock BambaForCausalLM of this config is present with its shape, and nothing else."""
    with torch.device("meta"):
        expected = {k: v.shape for k, v in BambaForCausalLM(bamba).state_dict().items()}
    if bamba.tie_word_embeddings:
        expected.pop("lm_head.weight")
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"extra {k}" for k in state if k not in expected]
    problems += [
        f"{k} has shape {tuple(state[k].shape)}, Bamba's {tuple(expected[k])}"
        for k in state
        if k in expected and state[k].shape != expected[k]
    ]
    if problems:
        raise UserError(f"the student does not map onto BambaForCausalLM: {'; '.join(problems[:5])}")


def read_student_config(directory: Path, scan_backend: str = "auto") -> HybridConfig:
    """The student config of an exported Bamba directory (config.json only, no weights)."""
    config = AutoConfig.from_pretrained(str(directory))
    if config.model_type != MODEL_TYPE:
        raise UserError(f"{directory}: model_type {config.model_type!r}, not {MODEL_TYPE!r}")
    return from_bamba_config(config, str(directory), scan_backend, _dtype_name(config.dtype))


def from_bamba(directory: Path, scan_backend: str = "auto") -> HybridForCausalLM:
    """A student from a Bamba directory written by `to_bamba_*` (possibly re-saved by transformers)."""
    hybrid_config = read_student_config(directory, scan_backend)
    bamba, info = BambaForCausalLM.from_pretrained(str(directory), dtype=hybrid_config.dtype, output_loading_info=True)
    problems = {k: v for k, v in info.items() if k != "error_msgs" and v}
    if problems:
        raise UserError(f"{directory}: the weights do not match its config.json: {problems}")
    widths, rep = student_widths(hybrid_config), hybrid_config.num_attention_heads // hybrid_config.num_key_value_heads
    state = {}
    for key, value in bamba.state_dict().items():
        name, kind, rest = _rename(key, _TO_STUDENT, hybrid_config.pattern)
        if kind == MAMBA and rest in WIDENED:
            value = narrow(value, WIDENED[rest], widths, hybrid_config.head_dim, rep, f"{directory}: {key}")
        state[name] = value
    student = HybridForCausalLM(hybrid_config).to(hybrid_config.dtype)
    student.load_state_dict(state, strict=True)
    return student


def _dtype_name(dtype: torch.dtype | str | None) -> str:
    """config.json's dtype as a HybridConfig torch_dtype name (float32 when it names none)."""
    names = {v: k for k, v in DTYPES.items()}
    name = "float32" if dtype is None else dtype if isinstance(dtype, str) else names.get(dtype)
    if name not in DTYPES:
        raise UserError(f"weights in {dtype}; the student supports {', '.join(DTYPES)}")
    return name
