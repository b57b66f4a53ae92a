"""Save/load a student as `config.json` + `model.safetensors`, each written atomically (temp file, fsync, os.replace).

A crash mid-save leaves the previous file (or none), never half of one. Weights are written before the config, so a
directory with a config.json always has the weights that config was saved with (or newer ones, which load_checkpoint
then reports as a shape/key mismatch naming the file).
"""

from __future__ import annotations

import os
from pathlib import Path

import safetensors.torch
import torch

from ..atomic import write_file_atomic
from .config import HybridConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TIED_KEY = "lm_head.weight"  # shares embed_tokens.weight when tie_word_embeddings; stored once


def _expected_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    if model.config.tie_word_embeddings:
        state.pop(TIED_KEY)
    return state


def save_checkpoint(model: torch.nn.Module, directory: str | os.PathLike) -> Path:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in _expected_state(model).items()}
    write_file_atomic(
        out / WEIGHTS_NAME, lambda p: safetensors.torch.save_file(tensors, str(p), metadata={"format": "pt"})
    )
    write_file_atomic(out / CONFIG_NAME, lambda p: p.write_text(model.config.to_json()))
    return out


def load_checkpoint(cls, directory: str | os.PathLike, scan_backend: str | None = None):
    """Build `cls(config)` from `directory` and load its weights; any mismatch raises naming the file and key."""
    src = Path(directory)
    config_path, weights_path = src / CONFIG_NAME, src / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {src} is not a complete hybrid_distill checkpoint")
    config = HybridConfig.from_json(config_path.read_text(), source=str(config_path))
    if scan_backend is not None:
        config.scan_backend = scan_backend
    model = cls(config).to(config.dtype)
    try:
        tensors = safetensors.torch.load_file(str(weights_path))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise ValueError(f"{weights_path}: cannot read safetensors file ({e})") from e
    expected = _expected_state(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{weights_path} does not match {config_path} (pattern {config.pattern!r}, mixer {config.mixer!r}): "
            f"missing tensors {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected tensors {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for key, ref in expected.items():
        if tensors[key].shape != ref.shape:
            raise ValueError(
                f"{weights_path}: tensor {key} has shape {tuple(tensors[key].shape)} but {config_path} "
                f"implies {tuple(ref.shape)}"
            )
    model.load_state_dict(tensors, strict=not config.tie_word_embeddings)
    return model
