"""Security: nothing a run directory or a checkpoint holds runs code when it is evaluated or resumed."""

from __future__ import annotations

import os

import pytest
import torch
from omegaconf import OmegaConf

from hybrid_distill.errors import UserError
from hybrid_distill.eval.loading import load_student, resolve_checkpoint
from hybrid_distill.reliability.checkpoints import check_checkpoint


class Payload:
    """Unpickling this calls os.mkdir(marker): a stand-in for any command a crafted checkpoint could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def crafted_checkpoint(run_dir, marker):
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("stage:\n  name: distill\n")
    path = run_dir / "distill" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {"student.x": Payload(marker)}, "loops": {}}, path)
    return path


def test_eval_of_a_crafted_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    path = crafted_checkpoint(tmp_path / "run", marker)
    with pytest.raises(UserError, match="cannot be read as a Lightning checkpoint of tensors"):
        load_student(resolve_checkpoint(str(path)), None, None, None)
    assert not marker.exists()


def test_resuming_from_a_crafted_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    path = crafted_checkpoint(tmp_path / "run", marker)
    with pytest.raises(UserError, match="cannot be read"):
        check_checkpoint(path, module=None)  # read before Lightning's own (weights_only) load
    assert not marker.exists()


def test_a_missing_teacher_path_is_not_taken_for_a_hub_id(monkeypatch):
    from hybrid_distill.models.teacher import resolve_weights_path

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # even where the hub is reachable
    with pytest.raises(UserError, match=r"model.path 'someorg/typo' does not exist: .* hf://<org>/<name>"):
        resolve_weights_path("someorg/typo")
    assert resolve_weights_path("hf://someorg/model") == "someorg/model"  # the explicit form goes to the hub


def test_a_missing_data_source_is_not_taken_for_a_hub_id(monkeypatch):
    from hybrid_distill.data import loaders

    asked = []
    monkeypatch.setattr(
        loaders,
        "load_dataset",
        lambda name, **kwargs: (
            asked.append(name)
            or loaders.Dataset.from_list(
                [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]
            )
        ),
    )
    with pytest.raises(FileNotFoundError, match=r"someorg/typo does not exist .* hf://<org>/<name>"):
        loaders.load_chat_dataset("someorg/typo")
    assert asked == []  # nothing was sent to the hub
    assert len(loaders.load_chat_dataset("hf://someorg/chats")) == 1 and asked == ["someorg/chats"]
    assert len(loaders.load_chat_dataset("builtin", num_rows=3)) == 3  # the generated sources keep their names
    assert len(loaders.load_chat_dataset("shakespeare_instruct", num_rows=3)) == 3


def test_eval_refuses_a_lightning_checkpoint_of_another_layer_pattern(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from hybrid_distill.eval.loading import Checkpoint
    from hybrid_distill.models import build_student

    torch.manual_seed(0)
    teacher = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=True,
        )
    )
    other = build_student(teacher, pattern="AM", scan_backend="torch_ref")
    path = tmp_path / "last.ckpt"
    torch.save(
        {"state_dict": {f"student.{k}": v for k, v in other.state_dict().items() if k != "lm_head.weight"}}, path
    )  # as a distill run saves it: no teacher, tied head
    ck = Checkpoint(None, path, tmp_path, OmegaConf.create({"stage": {"name": "distill"}}))

    def build(pattern):
        return lambda cfg, t: build_student(t, pattern=pattern, scan_backend="torch_ref")

    with pytest.raises(
        UserError,
        match=r"does not match the student .*pattern MA.*: missing layers.0.mixer.*"
        r"unexpected layers.0.mixer.k_proj",
    ):
        load_student(ck, teacher, object(), None, build=build("MA"))
    student, _ = load_student(ck, teacher, object(), None, build=build("AM"))  # its own pattern loads
    torch.testing.assert_close(student.state_dict(), other.state_dict())
