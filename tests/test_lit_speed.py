"""The `speed` switches change how fast a step runs, not what it computes: each one against the plain path (values and
gradients), on small random models, plus the errors of bad settings."""

from __future__ import annotations

import copy

import pytest
import torch

from helpers import compose_config
from hybrid_distill import losses
from hybrid_distill.cli import run
from hybrid_distill.errors import UserError
from hybrid_distill.lit.distill import DistillModule
from hybrid_distill.lit.settings import DistillLoss, OptimSettings, SpeedSettings
from hybrid_distill.lit.speed import blocks, compile_model, enable_activation_checkpointing, prepare_frozen_teacher
from hybrid_distill.lit.teacher_pretrain import TeacherPretrainModule
from hybrid_distill.models import build_student, set_trainable
from hybrid_distill.models.teacher import build_random_teacher

ARCH = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    max_position_embeddings=64,
    tie_word_embeddings=True,
)
KL_SFT = DistillLoss(
    divergence="kl",
    divergence_weight=0.5,
    ce_weight=1.0,
    temperature=2.0,
    t2_scaling=True,
    jsd_beta=0.5,
    vocab_chunk=None,
)


def _pair(trainable: str = "all"):
    teacher = build_random_teacher(ARCH, seed=0)
    student = set_trainable(build_student(teacher, pattern="MA", scan_backend="torch_ref"), trainable)
    return teacher, student


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, ARCH["vocab_size"], (2, 12), generator=g)  # (B, T)
    labels = ids.clone()
    labels[0, :4] = losses.IGNORE_INDEX  # a prompt that does not count
    return {"input_ids": ids, "labels": labels}


def _step(module, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss, gradients of the trained model's parameters by name) of one training step."""
    module.train()
    module.log = lambda *args, **kwargs: None  # outside a Trainer
    model = module.student if isinstance(module, DistillModule) else module.model
    model.zero_grad()
    loss = module.training_step(batch, 0)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same_step(a, b, rtol=1e-5, atol=1e-6):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    torch.testing.assert_close(loss_a, loss_b, rtol=rtol, atol=atol)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize("trainable", ["all", "mamba"])
def test_fused_loss_step_equals_the_plain_step(trainable):
    teacher, student = _pair(trainable)
    plain = DistillModule(teacher, student, KL_SFT, OptimSettings(lr=1e-3), 1)
    fused = DistillModule(teacher, student, KL_SFT, OptimSettings(lr=1e-3), 1, SpeedSettings(loss_token_chunk=5))
    _assert_same_step(_step(plain, _batch()), _step(fused, _batch()))


@pytest.mark.parametrize("pattern", [None, "MA", "MM"])
def test_fused_ce_of_the_sft_step_equals_the_plain_one(pattern):
    """sft_teacher / pretrain_teacher train a Llama; the scratch stage the same module on a hybrid or pure Mamba."""
    model = build_random_teacher(ARCH, seed=1)
    if pattern:
        model = build_student(model, pattern=pattern, scan_backend="torch_ref")
    plain = TeacherPretrainModule(model, OptimSettings(lr=1e-3), 1)
    fused = TeacherPretrainModule(model, OptimSettings(lr=1e-3), 1, loss_token_chunk=7)
    _assert_same_step(_step(plain, _batch()), _step(fused, _batch()))
    assert fused.flops_per_batch == plain.flops_per_batch > 0


def test_activation_checkpointing_recomputes_blocks_with_the_same_gradients():
    teacher, student = _pair()
    plain = _step(DistillModule(teacher, student, KL_SFT, OptimSettings(lr=1e-3), 1), _batch())
    checkpointed_student = copy.deepcopy(student)
    enable_activation_checkpointing(checkpointed_student)
    calls = []
    for block in blocks(checkpointed_student):
        block.mlp.register_forward_pre_hook(lambda *args: calls.append(1))  # (recompute stops early: no post-hook)
    module = DistillModule(teacher, checkpointed_student, KL_SFT, OptimSettings(lr=1e-3), 1)
    _assert_same_step(plain, _step(module, _batch()))
    assert len(calls) == 2 * len(student.layers)  # each block ran again in the backward: the switch is on


def test_activation_checkpointing_of_the_hf_teacher_in_sft():
    model = build_random_teacher(ARCH, seed=2)
    plain = _step(TeacherPretrainModule(model, OptimSettings(lr=1e-3), 1), _batch())
    checkpointed = copy.deepcopy(model)
    enable_activation_checkpointing(checkpointed)
    assert len(blocks(checkpointed)) == ARCH["num_hidden_layers"]
    _assert_same_step(plain, _step(TeacherPretrainModule(checkpointed, OptimSettings(lr=1e-3), 1), _batch()))


def test_bf16_teacher_gives_the_fp32_loss_to_bf16_precision():
    """The frozen teacher in bfloat16 while the student runs in float32: targets differ only by bf16 rounding."""
    teacher, student = _pair()
    fp32 = _step(DistillModule(teacher, student, KL_SFT, OptimSettings(lr=1e-3), 1), _batch())
    bf16_teacher = prepare_frozen_teacher(copy.deepcopy(teacher), SpeedSettings(teacher_dtype="bfloat16"))
    assert next(bf16_teacher.parameters()).dtype == torch.bfloat16
    bf16 = _step(DistillModule(bf16_teacher, student, KL_SFT, OptimSettings(lr=1e-3), 1), _batch())
    torch.testing.assert_close(bf16[0], fp32[0], rtol=2e-2, atol=0)
    a = torch.cat([g.flatten() for g in fp32[1].values()])
    b = torch.cat([g.flatten() for g in bf16[1].values()])
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_teacher_attention_kernels_agree(attention):
    teacher = build_random_teacher(ARCH, seed=3).eval()
    ids = _batch()["input_ids"]
    reference = teacher(input_ids=ids).logits
    prepare_frozen_teacher(teacher, SpeedSettings(teacher_attention=attention))
    assert teacher.config._attn_implementation == attention
    torch.testing.assert_close(teacher(input_ids=ids).logits, reference, rtol=1e-5, atol=1e-5)


def test_compile_marks_blocks_or_the_decoder():
    teacher, student = _pair()
    compile_model(student, "blocks")
    assert all(b._compiled_call_impl is not None for b in student.layers)
    assert student._compiled_call_impl is None
    compile_model(teacher, "model", decoder=teacher.get_decoder())
    assert teacher.get_decoder()._compiled_call_impl is not None
    assert list(teacher.state_dict()) == list(build_random_teacher(ARCH).state_dict())  # names unchanged


@pytest.mark.slow  # inductor compiles C++ on the CPU: minutes
@pytest.mark.parametrize("how", ["blocks", "model"])
def test_compiled_student_step_equals_eager(how):
    teacher, student = _pair()
    eager = _step(DistillModule(teacher, student, KL_SFT, OptimSettings(lr=1e-3), 1), _batch())
    compiled = copy.deepcopy(student)
    compile_model(compiled, how)
    _assert_same_step(eager, _step(DistillModule(teacher, compiled, KL_SFT, OptimSettings(lr=1e-3), 1), _batch()))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(loss_token_chunk=0), "speed.loss_token_chunk=0"),
        (dict(loss_token_chunk="abc"), "speed.loss_token_chunk='abc'"),
        (dict(teacher_dtype="fp8"), "speed.teacher_dtype='fp8'"),
        (dict(teacher_attention="flex"), "speed.teacher_attention='flex'"),
        (dict(compile="everything"), "speed.compile='everything'"),
    ],
)
def test_bad_speed_settings_are_one_clear_error(kwargs, message):
    with pytest.raises(UserError, match=message):
        SpeedSettings(**kwargs)


def test_fused_loss_refuses_what_it_does_not_compute():
    rkl = DistillLoss(**{**KL_SFT.__dict__, "divergence": "rkl"})
    with pytest.raises(UserError, match="divergence=kl only, not 'rkl'"):
        SpeedSettings(loss_token_chunk=4).check_loss(rkl)
    chunked = DistillLoss(**{**KL_SFT.__dict__, "vocab_chunk": 16})
    with pytest.raises(UserError, match="loss.vocab_chunk=null"):
        SpeedSettings(loss_token_chunk=4).check_loss(chunked)


ONE_STEP_RANDOM = ["model.path=random", "trainer.max_steps=1", "++stage.val_every=1", "trainer.limit_val_batches=1"]
SWITCHES = ["speed=fast", "speed.compile=false", "speed.activation_checkpointing=true", "logger=none"]


def test_distill_stage_runs_with_the_switches_from_the_config(tmp_path, cache_dir):
    """speed.* reaches the distill stage through `python train.py`'s config (random teacher weights)."""
    results = run(compose_config(tmp_path, [*ONE_STEP_RANDOM, *SWITCHES, "student.calibration_batches=0"]))
    assert results["student_ppl"] > 1


def test_sft_teacher_stage_trains_every_weight_of_the_teacher(tmp_path, cache_dir):
    results = run(compose_config(tmp_path, [*ONE_STEP_RANDOM, *SWITCHES, "stage=sft_teacher"]))
    assert results["teacher_ppl"] > 1 and results["params/trainable"] == results["params/total"]
    assert results["teacher_dir"] is None  # stage.save=false
