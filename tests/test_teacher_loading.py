"""Real-teacher loading code, exercised on local HF checkpoints in the same format as Llama-3's."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from hybrid_distill.errors import UserError
from hybrid_distill.models.teacher import load_teacher

ARCH = dict(
    vocab_size=2048,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)


@pytest.fixture
def hf_checkpoint(tmp_path, tiny_teacher):
    _, tokenizer = tiny_teacher
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            **ARCH,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        )
    )
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt", model


def test_local_checkpoint_loads_with_identical_logits(hf_checkpoint):
    path, original = hf_checkpoint
    model, tokenizer = load_teacher(str(path), expected_architecture=ARCH)
    ids = torch.randint(0, 2048, (2, 16))
    torch.testing.assert_close(model(input_ids=ids).logits, original(input_ids=ids).logits)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_teacher(str(tmp_path / "nowhere"))


def test_directory_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        load_teacher(str(tmp_path))


def test_architecture_mismatch_names_the_key(hf_checkpoint):
    path, _ = hf_checkpoint
    with pytest.raises(UserError, match="hidden_size=64 but the model preset expects hidden_size=4096"):
        load_teacher(str(path), expected_architecture={**ARCH, "hidden_size": 4096})
