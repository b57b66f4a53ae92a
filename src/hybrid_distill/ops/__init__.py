"""Scan operators: one dispatch per operator, a pure-PyTorch oracle, adapters to fast kernels."""

from .dispatch import (
    BACKENDS,
    KNOWN_BACKENDS,
    available_backends,
    resolve_backend,
    selective_scan,
    selective_step,
    ssd_scan,
    ssd_step,
)

__all__ = [
    "BACKENDS",
    "KNOWN_BACKENDS",
    "available_backends",
    "resolve_backend",
    "selective_scan",
    "selective_step",
    "ssd_scan",
    "ssd_step",
]
