"""Own Triton kernels of hybrid_distill: the chunked SSD (Mamba-2) scan, forward and backward, and its decode step.

Optional (needs triton): hybrid_distill.ops imports this package under try/except and routes `scan_backend=triton`
here.
On CPU tensors the kernels run only under the Triton interpreter (TRITON_INTERPRET=1 set before importing triton).
"""

from .ssd import LaunchConfig, ssd_chunk_scan, ssd_step

__all__ = ["LaunchConfig", "ssd_chunk_scan", "ssd_step"]
