"""HybridConfig: everything needed to rebuild a student (Llama fields + layer pattern + the mixer and its options).

config.json holds the mixer's options flat beside the other fields (as before the mixer registry); configs saved
then carried the options of both Mamba mixers, and the ones their mixer does not take are dropped on load. It also
names the transformers model type (`model_type: hybrid_distill`, `architectures`) so that transformers' Auto classes
find the student (models/hf_model.py); configs saved before carry neither and load the same.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import torch
import transformers

from .allocation import MAMBA, validate_pattern
from .mixers.registry import mixer_spec, reserve_option_names

INITS = ("attention", "random")
CONV_INITS = ("identity", "random")
# what config.json tells transformers' AutoConfig / AutoModelForCausalLM (registered in models/hf_model.py)
MODEL_TYPE = "hybrid_distill"
TRANSFORMERS_KEYS = {"model_type": MODEL_TYPE, "architectures": ["HybridForCausalLM"]}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# options that every config.json written before the mixer registry held, whichever Mamba mixer it named
LEGACY_OPTIONS = frozenset(
    {
        "d_conv",
        "conv_activation",
        "gate",
        "gate_norm",
        "dt_min",
        "dt_max",
        "dt_init_floor",
        "A_init_range",
        "dt_rank",
    }
)


# Llama fields a student copies from its teacher and hands back to the HF pieces it reuses (MLP, rotary embedding):
# the shape (also what a converted or imported student must share with the teacher) and the layer settings
LLAMA_SHAPE = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
)
LLAMA_SETTINGS = ("hidden_act", "rms_norm_eps", "max_position_embeddings", "attention_bias", "mlp_bias")


@dataclass
class HybridConfig:
    # Llama architecture, copied from the teacher's config
    vocab_size: int
    hidden_size: int
    intermediate_size: int  # MLP width; 0 = blocks without MLP (pure Mamba models trained from scratch)
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    pattern: str  # one letter per layer: A = attention, M = the mixer below
    hidden_act: str = "silu"
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 2048
    rope_parameters: dict = field(default_factory=lambda: {"rope_type": "default", "rope_theta": 10000.0})
    attention_bias: bool = False
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    bos_token_id: int | list[int] | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    # the mixer of the M layers (models/mixers/)
    mixer: str = "mamba2"  # mamba2: scalar decay per head; mamba1: per-channel diagonal A
    options: Any = None  # the mixer's options (its spec's dataclass); a dict of them is converted, None = defaults
    init: str = "attention"  # how mixer layers were created: from the attention they replace, or random
    conv_init: str = "identity"  # mixers with a conv: identity = last tap 1, others 0 (the conv starts as a no-op)
    # runtime
    scan_backend: str = "auto"
    torch_dtype: str = "float32"

    def __post_init__(self):
        validate_pattern(self.pattern)
        spec = mixer_spec(self.mixer)
        self._check_choice("init", INITS)
        if self.init == "attention" and spec.init_from_attention is None:
            raise ValueError(f"mixer {self.mixer!r} cannot start from attention; use init='random'")
        self._check_choice("conv_init", CONV_INITS)
        self._check_choice("torch_dtype", tuple(DTYPES))
        if (
            isinstance(self.intermediate_size, bool)
            or not isinstance(self.intermediate_size, int)
            or (self.intermediate_size < 0)
        ):
            raise ValueError(f"intermediate_size must be an integer >= 0 (0: no MLP), got {self.intermediate_size!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        given = dataclasses.asdict(self.options) if dataclasses.is_dataclass(self.options) else self.options
        self.options = spec.make_options(dict(given or {}), self)  # a fresh, checked copy

    def _check_choice(self, key: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, key)
        if value not in choices:
            raise ValueError(f"{key} must be one of {', '.join(choices)}; got {value!r}")

    @property
    def num_hidden_layers(self) -> int:
        return len(self.pattern)

    @property
    def mamba_layers(self) -> list[int]:
        return [i for i, kind in enumerate(self.pattern) if kind == MAMBA]

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.torch_dtype]

    # --- conversions ---------------------------------------------------------------------------------------------
    @classmethod
    def from_llama(cls, llama: transformers.LlamaConfig, pattern: str, dtype: torch.dtype = torch.float32, **kwargs):
        """Copy the architecture fields of a HF Llama config; `kwargs` set the mixer, its options and runtime fields."""
        validate_pattern(pattern, llama.num_hidden_layers)
        dtype_name = {v: k for k, v in DTYPES.items()}.get(dtype)
        if dtype_name is None:
            raise ValueError(f"unsupported teacher dtype {dtype}; use one of {', '.join(DTYPES)}")
        return cls.with_options(
            **{key: getattr(llama, key) for key in (*LLAMA_SHAPE, *LLAMA_SETTINGS) if key != "head_dim"},
            head_dim=getattr(llama, "head_dim", None) or llama.hidden_size // llama.num_attention_heads,
            pattern=pattern,
            rope_parameters=dict(llama.rope_parameters),
            tie_word_embeddings=llama.tie_word_embeddings,
            bos_token_id=llama.bos_token_id,
            eos_token_id=llama.eos_token_id,
            pad_token_id=llama.pad_token_id,
            torch_dtype=dtype_name,
            **kwargs,
        )

    def to_llama_config(self) -> transformers.LlamaConfig:
        """The HF config our reused Llama pieces (rotary embedding, MLP) are built from."""
        return transformers.LlamaConfig(
            **{key: getattr(self, key) for key in (*LLAMA_SHAPE, *LLAMA_SETTINGS)},
            num_hidden_layers=self.num_hidden_layers,
            rope_parameters=dict(self.rope_parameters),
        )

    @classmethod
    def with_options(cls, **values) -> "HybridConfig":
        """Build from HybridConfig fields and the mixer's options side by side (config.json's flat form)."""
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in values.items() if k in names}
        flat = {k: v for k, v in values.items() if k not in names}
        if flat and fields.get("options") is not None:
            raise ValueError(f"give the mixer's options flat or as options=, not both (got {', '.join(flat)} too)")
        return cls(**{"options": flat, **fields})

    def to_dict(self) -> dict[str, Any]:
        """The fields with the mixer's options flat beside them; tuples as lists (as JSON reads them back)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "options"}
        d.update(dataclasses.asdict(self.options))
        return {k: list(v) if isinstance(v, tuple) else v for k, v in copy.deepcopy(d).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "HybridConfig":
        """Build from a dict (to_dict's form); unknown or missing keys raise one ValueError naming them and `source`."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        model_type = d.get("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ValueError(f"{source}: model_type {model_type!r} is not a hybrid_distill student ({MODEL_TYPE!r})")
        d = {k: v for k, v in d.items() if k not in TRANSFORMERS_KEYS}
        try:
            spec = mixer_spec(d.get("mixer", fields["mixer"].default))
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from e
        takes = set(spec.option_names())
        unknown = sorted(set(d) - set(fields) - takes - LEGACY_OPTIONS)
        if unknown:
            raise ValueError(f"{source}: unknown HybridConfig key(s) {', '.join(unknown)}")
        required = [
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [n for n in required if n not in d]
        if missing:
            raise ValueError(f"{source}: missing HybridConfig key(s) {', '.join(missing)}")
        try:
            return cls.with_options(**{k: v for k, v in d.items() if k in fields or k in takes})
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source}: {e}") from e

    def to_json(self) -> str:
        """config.json: the fields (to_dict) plus what transformers' Auto classes read."""
        return json.dumps({**self.to_dict(), **TRANSFORMERS_KEYS}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> "HybridConfig":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source}: not valid JSON ({e})") from e
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(d).__name__}")
        return cls.from_dict(d, source)


# the mixers' options sit flat beside these fields in config.json: no option may take one of their names (this module
# depends on the mixer registry and tells it so; the registry never imports this module)
reserve_option_names((f.name for f in dataclasses.fields(HybridConfig)), "HybridConfig fields")
