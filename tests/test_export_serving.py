"""What serving engines read from an export: config.json's `architectures` names the transformers class to build."""

from __future__ import annotations

import json

import transformers
from transformers import AutoConfig

from hybrid_distill.export import export_student


def test_the_bamba_export_names_its_model_class(tiny_sweep, tmp_path):
    out = tmp_path / "bamba"
    export_student(tiny_sweep / "0" / "student", out)  # a real distilled student (MAMA), verified layer by layer
    (architecture,) = json.loads((out / "config.json").read_text())["architectures"]
    assert architecture == "BambaForCausalLM" and AutoConfig.from_pretrained(out).architectures == [architecture]
    assert getattr(transformers, architecture) is transformers.BambaForCausalLM
