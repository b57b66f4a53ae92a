"""Every scan backend against the sequential torch_ref oracle: values and gradients, fp32 and bf16.

Backends are parametrised by (name, device): each one available on CPU in this process (torch_chunked;
triton too when TRITON_INTERPRET=1, see test_ops_triton.py) plus, marked `gpu`, each one on CUDA.

On CPU every case runs (shapes and options: each one changes what the kernels mask and branch on). On CUDA each
distinct shape, dtype and option set is a new JIT compile of every kernel it reaches (seconds each), so there the
cases are one model-like layout (GPU_SSD_CASE) in fp32 and bf16, whose compiles the other CUDA cases reuse; the
`pytest -m gpu` budget (README, Tests and CI) is 5 minutes on one H200. Sweeps over shapes belong in
experiments/kernels/bench.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hybrid_distill.ops import BACKENDS, resolve_backend, selective_scan, selective_step, ssd_scan, ssd_step
from hybrid_distill.ops.selective_scan_ref import selective_scan_ref
from hybrid_distill.ops.ssd_ref import ssd_scan_ref

ORACLE = "torch_ref"
CPU_BACKENDS = [n for n, b in BACKENDS.items() if n != ORACLE and b.is_available() and b.supports_cpu]
GPU_BACKENDS = ["torch_chunked", "triton", "triton_chunked", "mamba_ssm"]
# Mamba-1 on CUDA has two implementations, torch_chunked's and mamba-ssm's: triton and triton_chunked route the
# selective scan and step to torch_chunked's functions (see
# test_selective_scan_of_the_own_kernel_backends_is_torch_chunked), so on CUDA their cases would rerun torch_chunked's
GPU_SELECTIVE_BACKENDS = ["torch_chunked", "mamba_ssm"]


def _backend_devices(gpu_backends):
    return [pytest.param(n, "cpu", id=f"{n}-cpu") for n in CPU_BACKENDS] + [
        pytest.param(n, "cuda", id=f"{n}-cuda", marks=pytest.mark.gpu) for n in gpu_backends
    ]


BACKEND_DEVICES = _backend_devices(GPU_BACKENDS)
SELECTIVE_BACKEND_DEVICES = _backend_devices(GPU_SELECTIVE_BACKENDS)

# relative-norm error bounds ||out - ref|| / ||ref||: fp32 arithmetic, tf32 matrix units, bf16 operands
TOL = {"fp32": 2e-5, "tf32": 5e-3, "bf16": 3e-2}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _tol(backend: str, dtype: str) -> float:
    # mamba-ssm's Triton SSD runs fp32 dots in tf32
    return TOL["tf32"] if (backend == "mamba_ssm" and dtype == "fp32") else TOL[dtype]


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double().cpu(), ref.double().cpu()
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def _skip_unavailable(backend: str, device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    try:
        resolve_backend(backend, torch.device(device))
    except RuntimeError as err:
        pytest.skip(str(err))


def _check_close(name: str, out, ref, tol: float) -> None:
    assert out is not None and ref is not None, f"{name}: gradient missing"
    assert out.shape == ref.shape, f"{name}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    assert torch.isfinite(out.float()).all(), f"{name}: non-finite values"
    err = _rel_err(out, ref)
    assert err < tol, f"{name}: relative error {err:.2e} >= {tol:.0e}"


# ----------------------------------------------------------------------------------------------- SSD (Mamba-2)
# (batch, length, heads, headdim, dstate, B groups, C groups); lengths are not multiples of the chunk sizes
SSD_SHAPES = [
    (2, 37, 4, 16, 16, 1, 1),
    (1, 130, 6, 16, 32, 2, 3),  # B and C with different group counts (lcm 6)
    (1, 77, 8, 32, 16, 4, 2),
    (2, 45, 4, 32, 32, 2, 4),  # a student's layout: head dim = d_state, B in KV-head groups, C per head
]
# (D shape, dt_softplus with dt_bias, initial state)
SSD_OPTIONS = [("head", True, True), ("headdim", False, False), (None, True, False)]


def make_ssd_inputs(shape, options, dtype, device, seed=0, sliced=False):
    """Inputs of one SSD case and its dt_softplus. sliced: x, B, C and dt are slices of one (batch, length, width)
    projection, as a model passes them (strides of batch and sequence that are not those of a contiguous tensor);
    the values are the same as unsliced."""
    batch, length, nheads, headdim, dstate, gb, gc = shape
    d_kind, softplus, with_init = options
    g = torch.Generator().manual_seed(seed)

    def rnd(*s, scale=1.0, shift=0.0):
        return (torch.randn(*s, generator=g) * scale + shift).to(device)

    inputs = dict(
        x=rnd(batch, length, nheads, headdim),
        # softplus(dt + bias) lands in about [1e-3, 0.3], as after Mamba's dt init; raw dt in [0.01, 0.2]
        dt=rnd(batch, length, nheads, scale=0.5, shift=-1.0)
        if softplus
        else (torch.rand(batch, length, nheads, generator=g) * 0.19 + 0.01).to(device),
        A=-torch.exp(torch.rand(nheads, generator=g) * 2.77).to(device),  # -[1, 16]
        B=rnd(batch, length, gb, dstate),
        C=rnd(batch, length, gc, dstate),
        D={"head": rnd(nheads), "headdim": rnd(nheads, headdim), None: None}[d_kind],
        dt_bias=rnd(nheads, scale=0.5, shift=-2.0) if softplus else None,
        initial_state=rnd(batch, nheads, headdim, dstate, scale=0.5) if with_init else None,
    )
    low = {"x", "dt", "B", "C"}  # the activations; parameters and the state stay fp32 as in a bf16 model
    inputs = {k: (v.to(dtype) if k in low else v) if v is not None else None for k, v in inputs.items()}
    if sliced:
        parts = [inputs["x"].flatten(2), inputs["B"].flatten(2), inputs["C"].flatten(2), inputs["dt"]]
        x, B, C, dt = torch.cat(parts, -1).split([p.shape[-1] for p in parts], -1)
        inputs.update(
            x=x.unflatten(-1, (nheads, headdim)),
            B=B.unflatten(-1, (gb, dstate)),
            C=C.unflatten(-1, (gc, dstate)),
            dt=dt,
        )
    return inputs, softplus


def _grad_leaves(inputs):
    """Differentiable copies of the inputs. A view (a slice of a projection) stays a view with its strides, of a
    leaf copy of its base shared with the other views of that base: a plain clone() would make it contiguous."""
    bases, leaves = {}, {}
    for k, v in inputs.items():
        if v is None:
            leaves[k] = None
        elif v._base is None:
            leaves[k] = v.detach().clone().requires_grad_(True)
        else:
            base = v._base
            if id(base) not in bases:
                bases[id(base)] = base.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
            offset = v.storage_offset() - base.storage_offset()
            leaves[k] = bases[id(base)].as_strided(v.shape, v.stride(), offset)
    return leaves


def _ssd_outputs_and_grads(fn, inputs, softplus, seed=1):
    leaves = _grad_leaves(inputs)
    y, final = fn(**leaves, dt_softplus=softplus, return_final_state=True)
    g = torch.Generator().manual_seed(seed)
    dy = torch.randn(y.shape, generator=g).to(y.device, y.dtype)
    dfinal = torch.randn(final.shape, generator=g).to(final.device, final.dtype)
    loss = (y.float() * dy.float()).sum() + (final.float() * dfinal.float()).sum()
    names = [k for k, v in leaves.items() if v is not None]
    # autograd.grad, not backward(): the gradients of views (not leaves) too; an unused input gets None
    grads = torch.autograd.grad(loss, [leaves[k] for k in names], allow_unused=True)
    return y.detach(), final.detach(), dict(zip(names, grads))


# every shape with two of the options, every option with two shapes (the interpreter makes each case slow)
OPTION_IDS = ["D-softplus-init", "Dp-raw", "noD-softplus"]
# (shape, options, sliced, id)
SSD_CASES = [
    (SSD_SHAPES[s], SSD_OPTIONS[o], False, "x".join(map(str, SSD_SHAPES[s])) + "-" + OPTION_IDS[o])
    for s, o in ((0, 0), (0, 1), (1, 0), (1, 2), (2, 1), (2, 2), (3, 0))
]
# the one CUDA case: a student's layout (B in KV-head groups, C per head, head dim = d_state; 45 steps, a partial
# second chunk), every option on (D, dt_bias and softplus, initial state) and x, B, C, dt sliced from one projection
GPU_SSD_CASE = (SSD_SHAPES[3], SSD_OPTIONS[0], True, "x".join(map(str, SSD_SHAPES[3])) + "-D-softplus-init-sliced")


def _ssd_case_params():
    """(backend, device, shape, options, sliced, dtype): on CPU every case, on CUDA GPU_SSD_CASE."""
    cpu = [(b, "cpu", case, ()) for b in CPU_BACKENDS for case in SSD_CASES]
    gpu = [(b, "cuda", GPU_SSD_CASE, pytest.mark.gpu) for b in GPU_BACKENDS]
    return [
        pytest.param(b, device, shape, options, sliced, dtype, id=f"{b}-{device}-{case_id}-{dtype}", marks=marks)
        for b, device, (shape, options, sliced, case_id), marks in cpu + gpu
        for dtype in DTYPES
    ]


def _one_case(device, cpu_shape):
    """(shape, options, sliced) of a test with one case: on CUDA GPU_SSD_CASE, whose kernels are compiled already."""
    return GPU_SSD_CASE[:3] if device == "cuda" else (cpu_shape, SSD_OPTIONS[0], False)


@pytest.mark.parametrize("backend,device,shape,options,sliced,dtype", _ssd_case_params())
def test_ssd_scan_values_and_grads(backend, device, shape, options, sliced, dtype):
    _skip_unavailable(backend, device)
    inputs, softplus = make_ssd_inputs(shape, options, DTYPES[dtype], device, sliced=sliced)
    tol = _tol(backend, dtype)
    y, final, grads = _ssd_outputs_and_grads(lambda **kw: ssd_scan(**kw, backend=backend), inputs, softplus)
    y_ref, final_ref, grads_ref = _ssd_outputs_and_grads(ssd_scan_ref, inputs, softplus)
    assert y.dtype == inputs["x"].dtype
    _check_close("y", y, y_ref, tol)
    _check_close("final_state", final, final_ref, tol)
    for name, grad_ref in grads_ref.items():
        _check_close(f"d{name}", grads[name], grad_ref, tol)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_ssd_scan_without_final_state_returns_only_y(backend, device):
    _skip_unavailable(backend, device)
    shape, options, sliced = _one_case(device, SSD_SHAPES[0])
    inputs, softplus = make_ssd_inputs(shape, options, torch.float32, device, sliced=sliced)
    y = ssd_scan(**inputs, dt_softplus=softplus, backend=backend)
    assert isinstance(y, torch.Tensor)
    _check_close("y", y, ssd_scan_ref(**inputs, dt_softplus=softplus), _tol(backend, "fp32"))


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_ssd_step_continues_the_scan(backend, device, dtype):
    """Scanning L-1 tokens then one decode step equals scanning all L tokens (y at the last token and the state)."""
    _skip_unavailable(backend, device)
    shape, options, sliced = _one_case(device, SSD_SHAPES[1])
    inputs, softplus = make_ssd_inputs(shape, options, DTYPES[dtype], device, sliced=sliced)
    y_ref, final_ref = ssd_scan_ref(**inputs, dt_softplus=softplus, return_final_state=True)
    head = {k: (v[:, :-1] if k in ("x", "dt", "B", "C") else v) for k, v in inputs.items()}
    _, state = ssd_scan(**head, dt_softplus=softplus, return_final_state=True, backend=backend)
    state_before = state.clone()
    y_last, new_state = ssd_step(
        state,
        inputs["x"][:, -1],
        inputs["dt"][:, -1],
        inputs["A"],
        inputs["B"][:, -1],
        inputs["C"][:, -1],
        inputs["D"],
        inputs["dt_bias"],
        softplus,
        backend=backend,
    )
    assert torch.equal(state, state_before), "ssd_step must not modify its input state"
    tol = _tol(backend, dtype)
    _check_close("y_last", y_last, y_ref[:, -1], tol)
    _check_close("state", new_state, final_ref, tol)


# ------------------------------------------------------------------------------------- selective scan (Mamba-1)
# (batch, dim, dstate, length, groups of B/C or None for the (B, N, L) layout)
SEL_SHAPES = [(2, 8, 16, 37, None), (1, 12, 4, 130, 3), (2, 16, 8, 200, 1)]


def make_selective_inputs(shape, dtype, device, with_z, with_init, seed=0):
    batch, dim, dstate, length, groups = shape
    g = torch.Generator().manual_seed(seed)

    def rnd(*s, scale=1.0, shift=0.0):
        return (torch.randn(*s, generator=g) * scale + shift).to(device)

    bc_shape = (batch, dstate, length) if groups is None else (batch, groups, dstate, length)
    inputs = dict(
        u=rnd(batch, dim, length),
        delta=rnd(batch, dim, length, scale=0.5, shift=-1.0),
        A=-torch.arange(1, dstate + 1, dtype=torch.float32).repeat(dim, 1).to(device),  # Mamba-1 S4D-real init
        B=rnd(*bc_shape),
        C=rnd(*bc_shape),
        D=rnd(dim),
        z=rnd(batch, dim, length) if with_z else None,
        delta_bias=rnd(dim, scale=0.5, shift=-2.0),
        initial_state=rnd(batch, dim, dstate, scale=0.5) if with_init else None,
    )
    low = {"u", "delta", "B", "C", "z"}
    return {k: (v.to(dtype) if k in low else v) if v is not None else None for k, v in inputs.items()}


def _sel_outputs_and_grads(fn, inputs, seed=1):
    leaves = _grad_leaves(inputs)
    y, final = fn(**leaves, delta_softplus=True, return_final_state=True)
    g = torch.Generator().manual_seed(seed)
    dy = torch.randn(y.shape, generator=g).to(y.device, y.dtype)
    dfinal = torch.randn(final.shape, generator=g).to(final.device, final.dtype)
    ((y.float() * dy.float()).sum() + (final.float() * dfinal.float()).sum()).backward()
    return y.detach(), final.detach(), {k: v.grad for k, v in leaves.items() if v is not None}


def _selective_case_params():
    """(backend, device, shape, with_z, with_init, dtype): on CPU every shape and option, on CUDA one of each."""
    options = [(True, True, "z-init"), (False, False, "plain")]
    cpu = [(b, "cpu", shape, opt, ()) for b in CPU_BACKENDS for shape in SEL_SHAPES for opt in options]
    gpu = [(b, "cuda", SEL_SHAPES[1], options[0], pytest.mark.gpu) for b in GPU_SELECTIVE_BACKENDS]
    return [
        pytest.param(
            b, device, shape, z, init, dtype, id=f"{b}-{device}-{'x'.join(map(str, shape))}-{opt_id}-{dtype}", marks=m
        )
        for b, device, shape, (z, init, opt_id), m in cpu + gpu
        for dtype in DTYPES
    ]


@pytest.mark.parametrize("backend,device,shape,with_z,with_init,dtype", _selective_case_params())
def test_selective_scan_values_and_grads(backend, device, shape, with_z, with_init, dtype):
    _skip_unavailable(backend, device)
    inputs = make_selective_inputs(shape, DTYPES[dtype], device, with_z, with_init)
    tol = _tol(backend, dtype)
    y, final, grads = _sel_outputs_and_grads(lambda **kw: selective_scan(**kw, backend=backend), inputs)
    y_ref, final_ref, grads_ref = _sel_outputs_and_grads(selective_scan_ref, inputs)
    _check_close("y", y, y_ref, tol)
    _check_close("final_state", final, final_ref, tol)
    for name, grad_ref in grads_ref.items():
        _check_close(f"d{name}", grads[name], grad_ref, tol)


@pytest.mark.parametrize("backend,device", SELECTIVE_BACKEND_DEVICES)
def test_selective_scan_without_final_state(backend, device):
    """The plain call (no states): on mamba_ssm this is the path that reaches its compiled selective_scan_fn."""
    _skip_unavailable(backend, device)
    if backend == "mamba_ssm":
        pytest.importorskip("selective_scan_cuda", reason="mamba-ssm's compiled Mamba-1 scan is not installed")
    inputs = make_selective_inputs(SEL_SHAPES[2], torch.float32, device, with_z=True, with_init=False)
    leaves = _grad_leaves(inputs)
    ref_leaves = _grad_leaves(inputs)
    y = selective_scan(**leaves, delta_softplus=True, backend=backend)
    y_ref = selective_scan_ref(**ref_leaves, delta_softplus=True)
    dy = torch.randn_like(y_ref)
    (y * dy).sum().backward()
    (y_ref * dy).sum().backward()
    tol = _tol(backend, "fp32")
    _check_close("y", y, y_ref, tol)
    for name, leaf in ref_leaves.items():
        if leaf is not None:
            _check_close(f"d{name}", leaves[name].grad, leaf.grad, tol)


@pytest.mark.parametrize("backend,device", SELECTIVE_BACKEND_DEVICES)
def test_selective_step_continues_the_scan(backend, device):
    _skip_unavailable(backend, device)
    inputs = make_selective_inputs(SEL_SHAPES[1], torch.float32, device, with_z=True, with_init=True)
    y_ref, final_ref = selective_scan_ref(**inputs, delta_softplus=True, return_final_state=True)
    head = {k: (v[..., :-1] if k in ("u", "delta", "B", "C", "z") else v) for k, v in inputs.items()}
    _, state = selective_scan(**head, delta_softplus=True, return_final_state=True, backend=backend)
    y_last, new_state = selective_step(
        state,
        inputs["u"][..., -1],
        inputs["delta"][..., -1],
        inputs["A"],
        inputs["B"][..., -1],
        inputs["C"][..., -1],
        inputs["D"],
        inputs["z"][..., -1],
        inputs["delta_bias"],
        True,
        backend=backend,
    )
    tol = _tol(backend, "fp32")
    _check_close("y_last", y_last, y_ref[..., -1], tol)
    _check_close("state", new_state, final_ref, tol)


def test_selective_scan_of_the_own_kernel_backends_is_torch_chunked():
    """Why the CUDA selective-scan cases leave out triton and triton_chunked: both run these same functions."""
    for name in ("triton", "triton_chunked"):
        assert BACKENDS[name].selective_scan is BACKENDS["torch_chunked"].selective_scan
        assert BACKENDS[name].selective_step is BACKENDS["torch_chunked"].selective_step


def test_chunked_scans_handle_a_single_token():
    inputs, softplus = make_ssd_inputs((1, 1, 2, 16, 16, 1, 1), SSD_OPTIONS[0], torch.float32, "cpu")
    _check_close(
        "ssd",
        ssd_scan(**inputs, dt_softplus=softplus, backend="torch_chunked"),
        ssd_scan_ref(**inputs, dt_softplus=softplus),
        TOL["fp32"],
    )
    sel = make_selective_inputs((1, 4, 4, 1, None), torch.float32, "cpu", with_z=False, with_init=True)
    _check_close("selective", selective_scan(**sel, backend="torch_chunked"), selective_scan_ref(**sel), TOL["fp32"])


def test_chunked_ssd_stays_finite_with_strong_decay():
    """Large dt * |A| (state forgotten within a step) must not overflow exp() in the chunked form."""
    inputs, _ = make_ssd_inputs(SSD_SHAPES[0], SSD_OPTIONS[1], torch.float32, "cpu")
    inputs["dt"] = inputs["dt"] * 100  # dt * A down to about -300 per step
    y = ssd_scan(**inputs, backend="torch_chunked")
    _check_close("y", y, ssd_scan_ref(**inputs), TOL["fp32"])


def test_softplus_dt_matches_explicit_softplus():
    inputs, _ = make_ssd_inputs(SSD_SHAPES[0], SSD_OPTIONS[0], torch.float32, "cpu")
    explicit = dict(inputs, dt=F.softplus(inputs["dt"] + inputs["dt_bias"]), dt_bias=None)
    _check_close(
        "y", ssd_scan(**inputs, dt_softplus=True, backend="torch_chunked"), ssd_scan_ref(**explicit), TOL["fp32"]
    )
