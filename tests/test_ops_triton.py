"""Own Triton kernels (hybrid_distill.kernels): parity with torch_ref, run under the Triton CPU interpreter.

Triton picks interpreter or compiler when the kernels are defined (at import, from TRITON_INTERPRET), so on a
CPU machine this module runs the kernel tests in a child pytest with TRITON_INTERPRET=1: the triton-backend
cases of test_ops_parity.py and the tests below. Nothing leaks into this process. On CUDA they run directly.

Under the interpreter every case runs; on CUDA (marked gpu) only those that reach a kernel configuration the
GPU case of test_ops_parity.py does not compile (each configuration is a JIT compile of seconds there): the
16-wide tiles, once for the chunk-parallel passes and once for the segmented forward with the sequential
backward, and the decode step with partial tiles. Strided inputs are in that GPU case (sliced from a projection).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hybrid_distill.ops import BACKENDS, ssd_scan, ssd_step
from hybrid_distill.ops.ssd_ref import ssd_scan_ref, ssd_step_ref

from test_ops_parity import SSD_OPTIONS, TOL, _check_close, _ssd_outputs_and_grads, make_ssd_inputs

TRITON = BACKENDS["triton"]
KERNELS_RUN_HERE = TRITON.is_available() and (TRITON.supports_cpu or torch.cuda.is_available())
# the kernel tests below run on CPU tensors in the interpreter child, and (marked gpu) on CUDA
CPU = pytest.param(
    "cpu",
    marks=pytest.mark.skipif(
        not (KERNELS_RUN_HERE and TRITON.supports_cpu), reason="run by the interpreter child process"
    ),
)
CUDA = pytest.param(
    "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
)
DEVICES = [CPU, CUDA]


# the bfloat16 cases under the interpreter are half its time (about 40 s on 2 cores): they run with the slow tests,
# and natively on CUDA in `pytest -m gpu`; float32 and the dtype-free cases run in the default suite
BF16 = "(bf16 or bfloat16)"


@pytest.mark.skipif(KERNELS_RUN_HERE, reason="the kernel tests run directly in this process")
@pytest.mark.parametrize("cases", [f"not {BF16}", pytest.param(BF16, marks=pytest.mark.slow)], ids=["fp32", "bf16"])
def test_kernels_under_the_interpreter(cases):
    pytest.importorskip("triton")
    tests = Path(__file__).parent
    env = dict(os.environ, TRITON_INTERPRET="1")
    # selective-scan cases are left out: the triton backend routes Mamba-1 to the torch_chunked code tested here
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-k",
        f"triton and not selective and not interpreter and {cases}",
        str(tests / "test_ops_parity.py"),
        str(tests / "test_ops_triton.py"),
    ]
    # two kernel families (triton, triton_chunked) in the interpreter: minutes on a small shared CPU
    child = subprocess.run(cmd, cwd=tests.parent, env=env, capture_output=True, text=True, timeout=1800)
    assert child.returncode == 0, f"interpreted kernel tests failed:\n{child.stdout[-6000:]}\n{child.stderr[-3000:]}"
    summary = child.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, child.stdout[-2000:]


@pytest.mark.parametrize("device", [CPU])  # on CUDA: test_ops_parity.py's GPU case is sliced the same way
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("backend", ["triton", "triton_chunked"])
def test_triton_scan_reads_strided_projection_slices(backend, dtype, device):
    """In a model x, B, C, dt are slices of one in_proj output: (batch, seq) strides that are not contiguous
    (_ssd_outputs_and_grads keeps them: its differentiable copies are views of one copied projection)."""
    batch, length, nheads, headdim, dstate = 2, 70, 4, 16, 16
    g = torch.Generator().manual_seed(3)
    width = nheads * headdim + 2 * dstate + nheads
    proj = torch.randn(batch, length, width, generator=g).to(device, dtype)
    x, B, C, dt = torch.split(proj, [nheads * headdim, dstate, dstate, nheads], dim=-1)
    inputs = dict(
        x=x.unflatten(-1, (nheads, headdim)),
        dt=dt,
        A=-torch.linspace(1, 8, nheads, device=device),
        B=B[:, :, None],
        C=C[:, :, None],
        D=torch.ones(nheads, device=device),
        dt_bias=None,
        initial_state=None,
    )
    assert not inputs["x"].is_contiguous()
    y, final, grads = _ssd_outputs_and_grads(lambda **kw: ssd_scan(**kw, backend=backend), inputs, True)
    y_ref, final_ref, grads_ref = _ssd_outputs_and_grads(ssd_scan_ref, inputs, True)
    tol = TOL["fp32" if dtype == torch.float32 else "bf16"]
    _check_close("y", y, y_ref, tol)
    _check_close("final_state", final, final_ref, tol)
    for name, grad_ref in grads_ref.items():
        _check_close(f"d{name}", grads[name], grad_ref, tol)


def _small_tiles(monkeypatch):
    """Chunks of 16 steps, tiles of 16 state entries, segments of 2 chunks: every loop of the kernels runs often."""
    from hybrid_distill.kernels import LaunchConfig, ssd, ssd_chunked

    monkeypatch.setattr(ssd_chunked, "CHUNKED_CONFIG", LaunchConfig(chunk=16, block_p=16, block_n=16))
    monkeypatch.setattr(ssd, "FWD_CONFIG", LaunchConfig(chunk=16, block_p=16))
    monkeypatch.setattr(ssd, "SEGMENT_CHUNKS", 2)


# (fwd, bwd, dtype): the chunk-parallel passes alone and mixed with the sequential ones
PASS_CASES = [
    ("chunked", "chunked", torch.float32),
    ("chunked", "chunked", torch.bfloat16),
    ("sequential", "chunked", torch.float32),
    ("chunked", "sequential", torch.float32),
    ("segmented", "chunked", torch.float32),
    ("segmented", "sequential", torch.bfloat16),
]
# on CUDA one case per kernel configuration of the small tiles: every chunk-parallel kernel (both passes), and the
# segmented forward (its segment states, the sequential forward on whole and partial segments) with the sequential
# backward at d_state 48 (a partly masked N block); the mixes differ only in host code, which the CPU cases test
GPU_PASS_CASES = [("chunked", "chunked", torch.bfloat16), ("segmented", "sequential", torch.bfloat16)]


def _pass_params():
    return [
        pytest.param(f, b, d, device.values[0], id=f"{f}-{b}-{str(d)[6:]}-{device.values[0]}", marks=device.marks)
        for device in DEVICES
        for f, b, d in PASS_CASES
        if device is CPU or (f, b, d) in GPU_PASS_CASES
    ]


@pytest.mark.parametrize("fwd,bwd,dtype,device", _pass_params())
def test_triton_chunked_passes_with_tiles_smaller_than_the_head(fwd, bwd, dtype, device, monkeypatch):
    """Tiles of 16 over head dims 32 and d_state 48 make every P and N loop of the chunk-parallel kernels run
    several times (and the last N tile partly masked); chunk 16 over 70 steps gives 5 chunks, the last partial,
    and segments of 2 chunks give 2 whole segments and a partial one."""
    _small_tiles(monkeypatch)
    from hybrid_distill import kernels

    inputs, softplus = make_ssd_inputs((1, 70, 4, 32, 48, 2, 4), SSD_OPTIONS[0], dtype, device)
    y, final, grads = _ssd_outputs_and_grads(
        lambda **kw: kernels.ssd_chunk_scan(**kw, fwd=fwd, bwd=bwd), inputs, softplus
    )
    y_ref, final_ref, grads_ref = _ssd_outputs_and_grads(ssd_scan_ref, inputs, softplus)
    tol = TOL["fp32" if dtype == torch.float32 else "bf16"]
    _check_close("y", y, y_ref, tol)
    _check_close("final_state", final, final_ref, tol)
    for name, grad_ref in grads_ref.items():
        _check_close(f"d{name}", grads[name], grad_ref, tol)


@pytest.mark.parametrize("device", [CPU])  # on CUDA the segmented GPU_PASS_CASES case compiles its kernels
def test_triton_segmented_forward_runs_segments_of_every_batch_entry(device, monkeypatch):
    """Batch 2 and a length of whole segments: the segments of both entries run as one batch of views."""
    _small_tiles(monkeypatch)
    from hybrid_distill import kernels

    inputs, softplus = make_ssd_inputs((2, 64, 4, 16, 16, 2, 4), SSD_OPTIONS[0], torch.float32, device)
    y, final = kernels.ssd_chunk_scan(**inputs, dt_softplus=softplus, return_final_state=True, fwd="segmented")
    y_ref, final_ref = ssd_scan_ref(**inputs, dt_softplus=softplus, return_final_state=True)
    _check_close("y", y, y_ref, TOL["fp32"])
    _check_close("final_state", final, final_ref, TOL["fp32"])


def test_triton_scan_names_the_pass_choices():
    pytest.importorskip("triton")
    from hybrid_distill import kernels

    inputs, _ = make_ssd_inputs((1, 4, 2, 16, 16, 1, 1), SSD_OPTIONS[1], torch.float32, "cpu")
    with pytest.raises(ValueError, match="bwd='parallel'; choose one of sequential, chunked"):
        kernels.ssd_chunk_scan(**inputs, bwd="parallel")


@pytest.mark.parametrize("device", DEVICES)
def test_triton_step_updates_in_place_when_asked(device):
    from hybrid_distill import kernels

    inputs, softplus = make_ssd_inputs((2, 1, 4, 24, 20, 2, 1), SSD_OPTIONS[0], torch.float32, device)
    step = (
        inputs["x"][:, 0],
        inputs["dt"][:, 0],
        inputs["A"],
        inputs["B"][:, 0],
        inputs["C"][:, 0],
        inputs["D"],
        inputs["dt_bias"],
        softplus,
    )
    state = inputs["initial_state"].clone()
    y_ref, state_ref = ssd_step_ref(state, *step)
    y, out = kernels.ssd_step(state, *step, out_state=state)
    assert out is state
    _check_close("y", y, y_ref, TOL["fp32"])
    _check_close("state", state, state_ref, TOL["fp32"])


@pytest.mark.parametrize("device", DEVICES)
def test_triton_step_with_grad_goes_through_the_reference(device):
    inputs, softplus = make_ssd_inputs((1, 1, 2, 16, 16, 1, 1), SSD_OPTIONS[0], torch.float32, device)
    x = inputs["x"][:, 0].clone().requires_grad_(True)
    y, _ = ssd_step(
        inputs["initial_state"],
        x,
        inputs["dt"][:, 0],
        inputs["A"],
        inputs["B"][:, 0],
        inputs["C"][:, 0],
        inputs["D"],
        inputs["dt_bias"],
        softplus,
        backend="triton",
    )
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
