"""save_pretrained / from_pretrained: exact round trip in a fresh process, clear errors, atomic writes."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import safetensors.torch
import torch

from hybrid_distill.models import HybridConfig, HybridForCausalLM, build_student
from hybrid_distill.models import checkpoint as ckpt
from test_models_common import make_teacher, perturb_, random_ids


def _trained_student(mixer="mamba2", **teacher_overrides):
    student = build_student(make_teacher(**teacher_overrides), pattern="MAMM", mixer=mixer, conv_init="random")
    perturb_(student)  # stands in for training: the reloaded values must be the trained ones, not a re-init
    return student.eval()


def test_round_trip_in_a_fresh_process(tmp_path):
    ids = random_ids(batch=2, length=7)
    expected = {}
    for mixer in ("mamba2", "mamba1"):
        student = _trained_student(mixer, tie_word_embeddings=mixer == "mamba1")
        student.save_pretrained(tmp_path / mixer)
        with torch.no_grad():
            expected[mixer] = student(ids).logits
    torch.save(ids, tmp_path / "ids.pt")
    script = textwrap.dedent(f"""
        import torch
        from hybrid_distill.models import HybridForCausalLM
        ids = torch.load({str(tmp_path / "ids.pt")!r})
        out = {{}}
        for mixer in ("mamba2", "mamba1"):
            model = HybridForCausalLM.from_pretrained({str(tmp_path)!r} + "/" + mixer).eval()
            assert model.config.pattern == "MAMM" and model.config.mixer == mixer
            with torch.no_grad():
                out[mixer] = model(ids).logits
        torch.save(out, {str(tmp_path / "out.pt")!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    got = torch.load(tmp_path / "out.pt")
    for mixer in ("mamba2", "mamba1"):
        assert torch.equal(got[mixer], expected[mixer])
    saved = json.loads((tmp_path / "mamba1" / "config.json").read_text())
    assert saved["pattern"] == "MAMM" and saved["mixer"] == "mamba1" and saved["gate_norm"] is False


def test_scan_backend_override_and_tied_weights(tmp_path):
    student = _trained_student(tie_word_embeddings=True)
    student.save_pretrained(tmp_path)
    assert "lm_head.weight" not in safetensors.torch.load_file(tmp_path / "model.safetensors")
    model = HybridForCausalLM.from_pretrained(tmp_path, scan_backend="torch_ref")
    assert model.config.scan_backend == "torch_ref"
    assert model.lm_head.weight is model.embed_tokens.weight
    assert torch.equal(model.embed_tokens.weight, student.embed_tokens.weight)


def test_bfloat16_student_reloads_in_bfloat16(tmp_path):
    teacher = make_teacher().to(torch.bfloat16)
    student = build_student(teacher, pattern="MAMA")
    assert student.config.torch_dtype == "bfloat16" and student.lm_head.weight.dtype == torch.bfloat16
    student.save_pretrained(tmp_path)
    model = HybridForCausalLM.from_pretrained(tmp_path)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    ids = random_ids(length=5)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, student(ids).logits)


def _edit_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


def test_mismatches_name_the_file_and_key(tmp_path):
    _trained_student().save_pretrained(tmp_path)
    weights = str(tmp_path / "model.safetensors")

    _edit_config(tmp_path, intermediate_size=96)
    with pytest.raises(ValueError, match=r"model\.safetensors: tensor layers\.0\.mlp\.\w+_proj\.weight has shape"):
        HybridForCausalLM.from_pretrained(tmp_path)

    _edit_config(tmp_path, intermediate_size=64, pattern="MMMM")  # layer 1 would be Mamba: its tensors are missing
    with pytest.raises(ValueError, match=r"model\.safetensors does not match .*config\.json.*layers\.1\.mixer"):
        HybridForCausalLM.from_pretrained(tmp_path)

    _edit_config(tmp_path, pattern="MAMM", n_layers=4)
    with pytest.raises(ValueError, match=r"config\.json: unknown HybridConfig key\(s\) n_layers"):
        HybridForCausalLM.from_pretrained(tmp_path)

    os.remove(weights)
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors not found"):
        HybridForCausalLM.from_pretrained(tmp_path)


def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    student = _trained_student()
    student.save_pretrained(tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in ("model.safetensors", "config.json")}

    def crash_halfway(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(ckpt.safetensors.torch, "save_file", crash_halfway)
    perturb_(student, seed=5)
    with pytest.raises(KeyboardInterrupt):
        student.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]  # no temp files left behind
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    HybridForCausalLM.from_pretrained(tmp_path)  # still loads


def test_config_dict_round_trip_and_missing_key():
    config = _trained_student("mamba1").config
    assert HybridConfig.from_json(config.to_json()) == config
    d = config.to_dict()
    del d["vocab_size"]
    with pytest.raises(ValueError, match=r"x\.json: missing HybridConfig key\(s\) vocab_size"):
        HybridConfig.from_dict(d, source="x.json")
    with pytest.raises(ValueError, match=r"x\.json: conv_activation must be one of silu, identity; got 'relu'"):
        HybridConfig.from_dict({**config.to_dict(), "conv_activation": "relu"}, source="x.json")


# what config.json held before the mixer registry, beyond the options of its own mixer: the other Mamba mixer's
# option (dt_rank auto on hidden 32; A_init_range's default)
LEGACY_EXTRA = {"mamba2": {"dt_rank": 2}, "mamba1": {"A_init_range": [1.0, 16.0]}}


@pytest.mark.parametrize("mixer", list(LEGACY_EXTRA))
def test_a_student_saved_before_the_mixer_registry_loads(mixer, tmp_path):
    student = _trained_student(mixer)
    student.save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **LEGACY_EXTRA[mixer]}))
    loaded = HybridForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config == student.config
    ids = random_ids()
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, student(ids).logits)
