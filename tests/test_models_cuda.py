"""The same parity checks on a CUDA device (fp32 and bf16), through whatever scan backend `auto` picks there."""

import pytest
import torch

from hybrid_distill.models import build_student
from hybrid_distill.models.generation import generate
from test_models_common import make_teacher, perturb_, random_ids

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_ratio_zero_equals_teacher_on_cuda():
    teacher = make_teacher().cuda()
    student = build_student(teacher, mamba_ratio=0.0)
    assert student.lm_head.weight.is_cuda
    ids = random_ids(length=33).cuda()
    with torch.no_grad():
        torch.testing.assert_close(student(ids).logits, teacher(ids).logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mixer", ["mamba2", "mamba1"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_recurrent_matches_parallel_on_cuda(mixer, dtype):
    student = build_student(make_teacher().cuda().to(dtype), pattern="MAMM", mixer=mixer, conv_init="random")
    perturb_(student)
    ids = random_ids(length=70).cuda()  # longer than a typical chunk of the chunked/Triton scans
    with torch.no_grad():
        parallel = student(ids).logits
        cache = student.new_cache()
        prefill = student(ids[:, :40], cache=cache).logits
        steps = [student(ids[:, t : t + 1], cache=cache).logits for t in range(40, 70)]
    recurrent = torch.cat([prefill, *steps], dim=1)
    if dtype == torch.float32:
        torch.testing.assert_close(recurrent, parallel, rtol=1e-3, atol=1e-3)
    else:  # bf16 weights and activations: compare relative to the logits' scale
        assert (recurrent - parallel).abs().mean() < 0.02 * parallel.abs().mean()
    out = generate(
        student,
        ids[:, :5],
        max_new_tokens=4,
        do_sample=True,
        top_p=0.9,
        generator=torch.Generator("cuda").manual_seed(0),
    )
    assert out.shape == (2, 9) and out.is_cuda
