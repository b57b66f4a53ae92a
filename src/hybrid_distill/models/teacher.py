"""Teacher loading: HF Llama-family checkpoints from a local directory, a GGUF file or a hub id (`hf://org/name`).

The tiny embedded teacher is built here from its preset's architecture values and trained by the
`pretrain_teacher` stage; real teachers (Llama-3-8B, Llama-3.2-1B, SmolLM2) load with transformers.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from ..errors import UserError
from ..paths import HUB_PREFIX, hub_id

# architecture keys a loaded checkpoint must agree on with its preset (anything else may differ)
CHECKED_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# model.path=random: random weights of the preset's architecture (throughput measurements need no real weights);
# a local directory of that name is ./random
RANDOM_WEIGHTS = "random"


def llama_config(architecture: Mapping[str, Any]) -> LlamaConfig:
    """A LlamaConfig from a preset's `architecture` mapping (plain HF config.json keys). Nested values (a preset's
    `rope_scaling`) become plain dicts and lists: transformers' strict config fields refuse OmegaConf containers."""
    return LlamaConfig(**plain(architecture))


def plain(value: Any) -> Any:
    """`value` with every mapping a dict and every sequence a list, all the way down (OmegaConf's included)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [plain(v) for v in value]
    return value


def build_random_teacher(architecture: Mapping[str, Any], seed: int = 0, dtype: str = "float32") -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config(architecture)).to(DTYPES[dtype])


def resolve_weights_path(path: str, gguf_file: str | None = None, key: str = "model.path") -> str:
    """Check that `path` (config key `key`) points at weights; raise one clear UserError if it does not."""
    hub = hub_id(path)
    if hub is not None:
        return hub  # transformers downloads it (or finds it in the HF cache)
    p = Path(path).expanduser()
    if p.is_dir():
        if gguf_file:
            if not (p / gguf_file).is_file():
                raise UserError(f"model.gguf_file '{gguf_file}' not found in {key} '{p}'")
        elif not (p / "config.json").is_file():
            raise UserError(f"{key} '{p}' has no config.json: it is not a HF transformers checkpoint directory")
        return str(p)
    raise UserError(
        f"{key} '{path}' does not exist: point it at a local HF checkpoint directory (config.json + "
        f"*.safetensors + tokenizer files), or name a hub model explicitly as {HUB_PREFIX}<org>/<name>"
    )


def check_architecture(config: Any, expected: Mapping[str, Any] | None, source: str) -> None:
    """Reject a checkpoint whose core shape differs from the preset it was loaded for."""
    if not expected:
        return
    for key in CHECKED_KEYS:
        if key in expected and getattr(config, key, None) != expected[key]:
            raise UserError(
                f"checkpoint '{source}' has {key}={getattr(config, key, None)} but the model preset "
                f"expects {key}={expected[key]}; pick the matching model=... preset or fix model.path"
            )


def load_teacher(
    path: str,
    gguf_file: str | None = None,
    dtype: str = "float32",
    expected_architecture: Mapping[str, Any] | None = None,
    key: str = "model.path",
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """Load a frozen-ready teacher and its tokenizer from `path` (dir, dir + gguf file, or hf://<hub id>; config key
    `key`)."""
    where = resolve_weights_path(path, gguf_file, key)
    kwargs: dict[str, Any] = {"dtype": DTYPES[dtype]}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(where, **({"gguf_file": gguf_file} if gguf_file else {}))
    except (OSError, ValueError) as err:
        raise UserError(f"{key} '{path}': could not load the teacher from '{where}': {err}") from err
    except pickle.UnpicklingError as err:  # torch.load(weights_only=True) met more than tensors in a .bin pickle
        raise UserError(
            f"{key} '{path}': the pickled weights in '{where}' hold more than tensors (or are damaged) and were not "
            "unpickled, since that could run code; use a checkpoint with safetensors weights"
        ) from err
    if model.config.model_type != "llama":
        raise UserError(
            f"teacher at '{where}' is a '{model.config.model_type}' model; hybrid_distill needs a Llama-family model"
        )
    check_architecture(model.config, expected_architecture, where)
    return model, tokenizer


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode and no gradients: the teacher only ever provides targets."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
