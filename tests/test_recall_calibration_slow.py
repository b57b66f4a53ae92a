"""The recall suite on the real SmolLM2-135M-Instruct teacher (experiments/smollm2/recall_calibration.md): the
formats behind the study's EVAL_RECALL. Slow: loads the GGUF (`make test-slow`)."""

from __future__ import annotations

import pytest

from hybrid_distill.eval.recall import logits_fn, recall_suite

pytestmark = pytest.mark.slow


def test_the_real_teacher_finds_the_needle_in_plain_text_and_with_the_cue_in_its_reply(smollm2):
    """The chat format scores the bare number, which the teacher words as a sentence ("The secret number is 2033."):
    0.00 there, against all right when the answer continues a cue (plain, or chat_cue's reply)."""
    teacher, tokenizer = smollm2
    vocab = min(teacher.config.vocab_size, len(tokenizer))
    accuracy = {}
    for text_format in ("plain", "chat_cue", "chat"):
        (row,) = recall_suite(
            {"teacher": logits_fn(teacher.eval())},
            tokenizer,
            vocab,
            ["needle"],
            train_length=128,
            multiples=[1],
            num_examples=8,
            seed=0,
            text_format=text_format,
            say=lambda line: None,
        )
        accuracy[text_format] = row["accuracy"]
    assert accuracy == {"plain": 1.0, "chat_cue": 1.0, "chat": 0.0}
