"""HybridConfig: everything needed to rebuild a student (Llama fields + layer pattern + Mamba mixer options)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import torch
import transformers

from .allocation import MAMBA, validate_pattern

MIXERS = ("mamba2", "mamba1")
INITS = ("attention", "random")
CONV_INITS = ("identity", "random")
CONV_ACTIVATIONS = ("silu", "identity")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Fields that describe the Mamba mixers; build_student(**mixer_options) accepts exactly these.
MIXER_OPTIONS = (
    "d_conv", "conv_activation", "gate", "gate_norm", "dt_min", "dt_max", "dt_init_floor", "A_init_range", "dt_rank",
)


@dataclass
class HybridConfig:
    # Llama architecture, copied from the teacher's config
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    pattern: str  # one letter per layer: A = attention, M = Mamba
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
    # Mamba mixers
    mixer: str = "mamba2"  # mamba2: scalar decay per head; mamba1: per-channel diagonal A
    init: str = "attention"  # how Mamba layers were created: from the attention they replace, or random
    conv_init: str = "identity"  # identity: last tap 1, others 0 (the conv starts as a no-op)
    d_conv: int = 4
    conv_activation: str = "silu"
    gate: bool = True  # y * silu(z)
    gate_norm: bool | None = None  # gated RMSNorm per head after the gate; None -> True for mamba2, False for mamba1
    dt_min: float = 1e-3
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    A_init_range: tuple[float, float] = (1.0, 16.0)  # mamba2: A = -U[lo, hi] per head
    dt_rank: int | str = "auto"  # mamba1: rank of the dt projection; auto = ceil(hidden_size / 16)
    # runtime
    scan_backend: str = "auto"
    torch_dtype: str = "float32"

    def __post_init__(self):
        validate_pattern(self.pattern)
        self._check_choice("mixer", MIXERS)
        self._check_choice("init", INITS)
        self._check_choice("conv_init", CONV_INITS)
        self._check_choice("conv_activation", CONV_ACTIVATIONS)
        self._check_choice("torch_dtype", tuple(DTYPES))
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.gate_norm is None:
            self.gate_norm = self.mixer == "mamba2"
        if self.dt_rank == "auto":
            self.dt_rank = -(-self.hidden_size // 16)
        if not isinstance(self.dt_rank, int) or self.dt_rank < 1:
            raise ValueError(f"dt_rank must be 'auto' or a positive integer, got {self.dt_rank!r}")
        self.A_init_range = tuple(self.A_init_range)
        if not 0 < self.A_init_range[0] <= self.A_init_range[1]:
            raise ValueError(f"A_init_range must be (lo, hi) with 0 < lo <= hi, got {self.A_init_range!r}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={self.dt_min}, dt_max={self.dt_max}")
        if self.d_conv < 1:
            raise ValueError(f"d_conv must be >= 1, got {self.d_conv}")

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
        """Copy the architecture fields of a HF Llama config; `kwargs` set the Mamba/runtime fields."""
        validate_pattern(pattern, llama.num_hidden_layers)
        dtype_name = {v: k for k, v in DTYPES.items()}.get(dtype)
        if dtype_name is None:
            raise ValueError(f"unsupported teacher dtype {dtype}; use one of {', '.join(DTYPES)}")
        return cls(
            vocab_size=llama.vocab_size,
            hidden_size=llama.hidden_size,
            intermediate_size=llama.intermediate_size,
            num_attention_heads=llama.num_attention_heads,
            num_key_value_heads=llama.num_key_value_heads,
            head_dim=getattr(llama, "head_dim", None) or llama.hidden_size // llama.num_attention_heads,
            pattern=pattern,
            hidden_act=llama.hidden_act,
            rms_norm_eps=llama.rms_norm_eps,
            max_position_embeddings=llama.max_position_embeddings,
            rope_parameters=dict(llama.rope_parameters),
            attention_bias=llama.attention_bias,
            mlp_bias=llama.mlp_bias,
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
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            hidden_act=self.hidden_act,
            rms_norm_eps=self.rms_norm_eps,
            max_position_embeddings=self.max_position_embeddings,
            rope_parameters=dict(self.rope_parameters),
            attention_bias=self.attention_bias,
            mlp_bias=self.mlp_bias,
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["A_init_range"] = list(self.A_init_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "HybridConfig":
        """Build from a dict; unknown or missing keys raise one ValueError naming them and `source`."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ValueError(f"{source}: unknown HybridConfig key(s) {', '.join(unknown)}")
        required = [n for n, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [n for n in required if n not in d]
        if missing:
            raise ValueError(f"{source}: missing HybridConfig key(s) {', '.join(missing)}")
        try:
            return cls(**d)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source}: {e}") from e

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> "HybridConfig":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source}: not valid JSON ({e})") from e
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(d).__name__}")
        return cls.from_dict(d, source)
