"""One entry point per scan operator, routed by `backend` (the `scan_backend` config group).

Backends register themselves in BACKENDS; `auto` picks the fastest one that is available for the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from . import mamba_ssm_backend, triton_backend
from .selective_scan_chunked import selective_scan_chunked
from .selective_scan_ref import selective_scan_ref, selective_step_ref
from .ssd_chunked import ssd_scan_chunked
from .ssd_ref import ssd_scan_ref, ssd_step_ref


@dataclass(frozen=True)
class Backend:
    name: str
    ssd_scan: Callable
    ssd_step: Callable
    selective_scan: Callable
    selective_step: Callable
    is_available: Callable[[], bool] = lambda: True
    install_hint: str = ""
    supports_cpu: bool = True


BACKENDS: dict[str, Backend] = {
    "torch_ref": Backend("torch_ref", ssd_scan_ref, ssd_step_ref, selective_scan_ref, selective_step_ref),
    # a decode step is one recurrence step: the reference step is already the direct computation
    "torch_chunked": Backend(
        "torch_chunked", ssd_scan_chunked, ssd_step_ref, selective_scan_chunked, selective_step_ref
    ),
    "triton": Backend(
        "triton",
        triton_backend.ssd_scan,
        triton_backend.ssd_step,
        triton_backend.selective_scan,
        triton_backend.selective_step,
        triton_backend.is_available,
        triton_backend.INSTALL_HINT,
        supports_cpu=triton_backend.interpreted(),
    ),
    # the chunk-parallel own kernels: not in `auto` until a GPU run shows them faster (kernels/README.md)
    "triton_chunked": Backend(
        "triton_chunked",
        triton_backend.ssd_scan_chunked,
        triton_backend.ssd_step,
        triton_backend.selective_scan,
        triton_backend.selective_step,
        triton_backend.is_available,
        triton_backend.INSTALL_HINT,
        supports_cpu=triton_backend.interpreted(),
    ),
    "mamba_ssm": Backend(
        "mamba_ssm",
        mamba_ssm_backend.ssd_scan,
        mamba_ssm_backend.ssd_step,
        mamba_ssm_backend.selective_scan,
        mamba_ssm_backend.selective_step,
        mamba_ssm_backend.is_available,
        mamba_ssm_backend.INSTALL_HINT,
        supports_cpu=False,
    ),
}

# order in which `auto` tries backends, per operator: GPU kernels first, the sequential oracle last. For the SSD
# scan the own Triton kernels come first: on an H100 they beat mamba-ssm's forward at every benchmarked shape and
# forward+backward at most (kernels/README.md); for Mamba-1 only mamba-ssm has a GPU kernel.
AUTO_ORDER_GPU: dict[str, tuple[str, ...]] = {
    "ssd": ("triton", "mamba_ssm", "torch_chunked", "torch_ref"),
    "selective": ("mamba_ssm", "torch_chunked", "torch_ref"),
}
AUTO_ORDER_CPU: tuple[str, ...] = ("torch_chunked", "torch_ref")
KNOWN_BACKENDS: tuple[str, ...] = ("auto", "torch_ref", "torch_chunked", "triton", "triton_chunked", "mamba_ssm")


def available_backends() -> list[str]:
    return [name for name, b in BACKENDS.items() if b.is_available()]


def resolve_backend(name: str, device: torch.device | None = None, op: str = "ssd") -> Backend:
    """Return the Backend for `name` (for `auto`: the best one for operator `op`, "ssd" or "selective"),
    or raise one clear error naming what to install."""
    if name not in KNOWN_BACKENDS:
        raise ValueError(f"unknown scan_backend '{name}'; choose one of {', '.join(KNOWN_BACKENDS)}")
    on_gpu = device is not None and device.type == "cuda"
    if name == "auto":
        for candidate in AUTO_ORDER_GPU[op] if on_gpu else AUTO_ORDER_CPU:
            b = BACKENDS.get(candidate)
            if b is not None and b.is_available() and (on_gpu or b.supports_cpu):
                return b
        return BACKENDS["torch_ref"]
    b = BACKENDS.get(name)
    if b is None or not b.is_available():
        hint = b.install_hint if b is not None else ""
        raise RuntimeError(f"scan_backend '{name}' is not available here. {hint}".strip())
    if not on_gpu and not b.supports_cpu:
        raise RuntimeError(f"scan_backend '{name}' needs CUDA tensors; use torch_ref or torch_chunked on CPU")
    return b


def ssd_scan(
    x,
    dt,
    A,
    B,
    C,
    D=None,
    dt_bias=None,
    dt_softplus=False,
    initial_state=None,
    return_final_state=False,
    backend: str = "auto",
):
    """Mamba-2 SSD scan; see ssd_ref.ssd_scan_ref for shapes and semantics."""
    fn = resolve_backend(backend, x.device).ssd_scan
    return fn(x, dt, A, B, C, D, dt_bias, dt_softplus, initial_state, return_final_state)


def ssd_step(state, x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, backend: str = "auto"):
    """Single-token SSD update; see ssd_ref.ssd_step_ref."""
    fn = resolve_backend(backend, x.device).ssd_step
    return fn(state, x, dt, A, B, C, D, dt_bias, dt_softplus)


def selective_scan(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    initial_state=None,
    return_final_state=False,
    backend: str = "auto",
):
    """Mamba-1 selective scan; see selective_scan_ref.selective_scan_ref."""
    fn = resolve_backend(backend, u.device, op="selective").selective_scan
    return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, return_final_state)


def selective_step(
    state, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, backend: str = "auto"
):
    """Single-token selective-scan update; see selective_scan_ref.selective_step_ref."""
    fn = resolve_backend(backend, u.device, op="selective").selective_step
    return fn(state, u, delta, A, B, C, D, z, delta_bias, delta_softplus)
