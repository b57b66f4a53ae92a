"""The student as a transformers model: `HybridForCausalLM` is a `PreTrainedModel` + `GenerationMixin`, registered
with AutoConfig / AutoModelForCausalLM (model_type `hybrid_distill`), so HF's `generate` options, streamers, stop
strings and `pipeline("text-generation")` work on the student's own caches (KV for attention layers, conv + SSM
states for Mamba layers; models/cache.py).

Design, and why:
- `HybridConfig` (models/config.py) stays the dataclass every stage, test and the exporter use. transformers needs
  `model.config` to be a `PreTrainedConfig`, whose own fields and methods clash with it (`to_dict`, `from_dict`,
  `torch_dtype`, `dtype`), so `HybridPretrainedConfig` wraps one instead of deriving from it: it holds the
  `HybridConfig` as `.hybrid` and forwards its fields (read and write: `model.config.scan_backend = ...` reaches the
  mixers, which share that `HybridConfig`), its properties and `to_dict` / `to_json` / `==`, so every caller of
  `student.config.<field>` works unchanged.
- the model is the same class as before (models/hybrid.py: same modules, same state_dict keys, same checkpoints);
  this module is its base class. Weights are read and written by models/checkpoint.py, not by transformers' loader:
  `from_pretrained` / `save_pretrained` keep their clear errors and the checkpoints of before (without `model_type`)
  still load with `HybridForCausalLM.from_pretrained`; `AutoModelForCausalLM.from_pretrained(student_dir)` needs the
  `model_type` that checkpoints save since, and `import hybrid_distill.models` first (that registers the classes;
  `import hybrid_distill` alone stays free of torch for the command line's quick `--help`). No `auto_map` is written:
  it would make transformers import Python files from the checkpoint directory (`trust_remote_code`), and a run
  directory may come from someone else.
- caches as transformers' Mamba-family models handle them: `_supports_default_dynamic_cache` is False (no
  `DynamicCache` is built), `prepare_inputs_for_generation` creates a `HybridCache` on the first step, `forward`
  returns it as `cache` and `generate` passes it back; beam search reorders it (`_reorder_cache`). The model is
  stateful (`_is_stateful`), so assisted generation is refused by transformers itself, and `generate(cache=...)`
  (continuing a cache) is refused here.
- `model.generate` is transformers' (the default: every HF option, what `pipeline` calls). The project's own loop,
  `models.generation.generate(model, ids, ...)` (greedy / temperature / top-k / top-p / EOS, no logits processors),
  is what the evaluation's internals call (lm-eval adapter, speculative decoding's baseline); greedy, both give the
  same tokens (tests/test_hf_interop.py).
"""

from __future__ import annotations

import dataclasses
import os

import torch
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PreTrainedConfig, PreTrainedModel

from . import checkpoint
from .config import DTYPES, MODEL_TYPE, HybridConfig
from .hf_compat import CACHE_ARG

# keys of a config.json / AutoConfig kwargs that belong to transformers' PreTrainedConfig, not to HybridConfig
_HF_KEYS = frozenset(f.name for f in dataclasses.fields(PreTrainedConfig)) | {
    "model_type",
    "name_or_path",
    "attn_implementation",
    "experts_implementation",
    "output_attentions",
    "num_labels",
}


def _is_hf_key(key: str) -> bool:
    """transformers' own config keys, and its private bookkeeping (`_commit_hash`, ...: whatever a release adds)."""
    return key in _HF_KEYS or key.startswith("_")


# what HybridPretrainedConfig forwards to its HybridConfig: the fields (read and write) and the read-only helpers
_FIELDS = frozenset(f.name for f in dataclasses.fields(HybridConfig))
_HELPERS = frozenset({"num_hidden_layers", "mamba_layers", "to_llama_config", "to_json"})


class HybridPretrainedConfig(PreTrainedConfig):
    """A `HybridConfig` seen as a transformers config (see the module docstring)."""

    model_type = MODEL_TYPE

    def __init__(self, hybrid: HybridConfig | None = None, **kwargs):
        """From a HybridConfig, or (as AutoConfig calls it) from config.json's keys, checked by HybridConfig."""
        if hybrid is None:
            own = {k: v for k, v in kwargs.items() if not _is_hf_key(k)}
            hybrid = HybridConfig.from_dict(own, source=f"{MODEL_TYPE} config")
            kwargs = {k: v for k, v in kwargs.items() if _is_hf_key(k) and k != "model_type"}
        super().__init__(**kwargs)
        # set last: during transformers' __post_init__ the forwarded names (e.g. rope_parameters) stay invisible,
        # so it neither rewrites nor validates them
        self.__dict__["hybrid"] = hybrid
        self.dtype = hybrid.dtype
        self.architectures = ["HybridForCausalLM"]

    def __getattr__(self, name):  # only reached for names transformers' config does not have
        hybrid = self.__dict__.get("hybrid")
        if hybrid is not None and (name in _FIELDS or name in _HELPERS):
            return getattr(hybrid, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name, value):
        if name in _FIELDS and "hybrid" in self.__dict__:
            setattr(self.hybrid, name, value)
            if name == "torch_dtype":
                self.dtype = self.hybrid.dtype
            return
        super().__setattr__(name, value)

    @property
    def torch_dtype(self) -> str:  # HybridConfig's name of the dtype ("float32"), not transformers' torch.dtype
        return self.hybrid.torch_dtype

    @torch_dtype.setter
    def torch_dtype(self, value: str) -> None:
        self.hybrid.torch_dtype = value
        self.dtype = self.hybrid.dtype

    def to_dict(self) -> dict:
        return self.hybrid.to_dict()

    def to_diff_dict(self) -> dict:
        return self.hybrid.to_dict()

    def to_json_string(self, use_diff: bool = True) -> str:
        return self.hybrid.to_json() + "\n"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hybrid!r})"

    def __eq__(self, other) -> bool:
        other = other.hybrid if isinstance(other, HybridPretrainedConfig) else other
        return isinstance(other, HybridConfig) and self.hybrid == other

    __hash__ = None


def as_pretrained_config(config: HybridConfig | HybridPretrainedConfig) -> HybridPretrainedConfig:
    return config if isinstance(config, HybridPretrainedConfig) else HybridPretrainedConfig(config)


# forward() inputs the hybrid does not compute: refused when given (not None / False), not silently dropped
_FORWARD_UNSUPPORTED = (
    "inputs_embeds",
    "position_ids",
    "labels",
    "token_type_ids",
    "output_attentions",
    "output_hidden_states",
)
# from_pretrained options that would change what is loaded and that a student directory cannot honour; every other
# keyword (the hub plumbing that AutoModel and pipeline pass: revision, cache_dir, token, _from_auto, ... whatever a
# transformers release adds) means nothing for a local directory and is ignored, as transformers' own loader does
_LOAD_UNSUPPORTED = (
    "quantization_config",
    "load_in_8bit",
    "load_in_4bit",
    "gguf_file",
    "tp_plan",
    "device_mesh",
    "adapter_name",
    "state_dict",
)


def check_forward_kwargs(kwargs: dict) -> None:
    """One clear error for forward() inputs the hybrid does not compute. Anything else is transformers' plumbing
    (e.g. the tokenizer generate passes along for stop strings), ignored as transformers' own models do."""
    bad = [k for k, v in kwargs.items() if k in _FORWARD_UNSUPPORTED and v is not None and v is not False]
    if bad:
        raise ValueError(
            f"HybridForCausalLM.forward does not support {', '.join(bad)} (it takes input_ids; positions come from "
            "the cache; attention weights and hidden states are not returned)"
        )


class HybridGenerationMixin(GenerationMixin):
    """transformers' `generate` on the hybrid's own cache (HybridForCausalLM derives from this and
    HybridPreTrainedModel, as transformers' `XForCausalLM(XPreTrainedModel, GenerationMixin)`)."""

    _is_stateful = True  # recurrent states cannot be rolled back by transformers (no assisted generation)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # prepare_inputs_for_generation builds the model's own HybridCache

    def generate(self, *args, **kwargs):
        if kwargs.get("cache") is not None or kwargs.get("past_key_values") is not None:
            raise ValueError(
                "HybridForCausalLM.generate builds a fresh HybridCache for each call; continuing a given cache is "
                "not supported (pass the whole token sequence instead)"
            )
        return super().generate(*args, **kwargs)

    # `**kwargs` by that name: transformers then checks generate's kwargs against forward's parameters. The cache
    # comes and goes under the installed release's name (CACHE_ARG: `cache`, or `past_key_values` up to 5.24).
    def prepare_inputs_for_generation(self, input_ids, use_cache=None, is_first_iteration=False, **kwargs):
        cache = kwargs.pop(CACHE_ARG, None)
        if use_cache is not False and cache is None:
            cache = self.new_cache()  # the first step (prefill); later steps get it back from forward's output
        return super().prepare_inputs_for_generation(
            input_ids, use_cache=use_cache, is_first_iteration=is_first_iteration, **{CACHE_ARG: cache}, **kwargs
        )

    def _reorder_cache(self, cache, beam_idx: torch.Tensor):
        """Beam search: keep the states of the beams that survive (every state tensor is (B, ...))."""
        cache.layers = [
            None if state is None else type(state)(*(t.index_select(0, beam_idx.to(t.device)) for t in state))
            for state in cache.layers
        ]
        return cache


class HybridPreTrainedModel(PreTrainedModel):
    """transformers' side of HybridForCausalLM (models/hybrid.py): its config class, loading and saving through
    models/checkpoint.py."""

    config_class = HybridPretrainedConfig
    base_model_prefix = ""
    main_input_name = "input_ids"
    _no_split_modules = ["HybridBlock"]

    def save_pretrained(self, directory, **kwargs) -> None:
        if kwargs:
            raise ValueError(f"HybridForCausalLM.save_pretrained takes only a directory, got {', '.join(kwargs)}")
        checkpoint.save_checkpoint(self, directory)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        *model_args,
        scan_backend: str | None = None,
        config: HybridPretrainedConfig | None = None,
        dtype: str | torch.dtype | None = None,
        torch_dtype: str | torch.dtype | None = None,
        device_map: str | torch.device | None = None,
        **kwargs,
    ):
        """A saved student directory (config.json + model.safetensors), or its `subfolder`. Also what
        AutoModelForCausalLM and pipeline call: they pass the config they read (whose scan_backend wins) and hub
        options, which a local directory ignores."""
        unsupported = [k for k in _LOAD_UNSUPPORTED if kwargs.get(k) not in (None, False)]
        if model_args:
            unsupported.append("positional model_args")
        if unsupported:
            raise ValueError(f"HybridForCausalLM.from_pretrained does not support {', '.join(unsupported)}")
        if kwargs.get("subfolder"):
            directory = os.path.join(directory, kwargs["subfolder"])
        if config is not None:
            scan_backend = scan_backend or config.scan_backend
        model = checkpoint.load_checkpoint(cls, directory, scan_backend=scan_backend)
        if config is not None:
            saved = {**model.config.to_dict(), "scan_backend": None}
            if {**config.to_dict(), "scan_backend": None} != saved:
                raise ValueError(f"{directory}: the given config differs from the saved config.json")
        dtype = dtype if dtype is not None else torch_dtype
        if dtype not in (None, "auto"):
            name = dtype if isinstance(dtype, str) else {v: k for k, v in DTYPES.items()}.get(dtype)
            if name not in DTYPES:
                raise ValueError(f"dtype must be one of {', '.join(DTYPES)} or 'auto'; got {dtype!r}")
            model.to(DTYPES[name])
            model.config.torch_dtype = name
        if device_map is not None:
            if not isinstance(device_map, (str, torch.device)) or device_map == "auto":
                raise ValueError(f"device_map must name one device (e.g. 'cuda:0'); got {device_map!r}")
            model.to(device_map)
        return model


def register_auto_classes(model_class: type[PreTrainedModel]) -> None:
    """AutoConfig / AutoModelForCausalLM know model_type `hybrid_distill` (idempotent: a second import is fine)."""
    AutoConfig.register(MODEL_TYPE, HybridPretrainedConfig, exist_ok=True)
    AutoModelForCausalLM.register(HybridPretrainedConfig, model_class, exist_ok=True)
