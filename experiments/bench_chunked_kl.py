"""Peak memory of the vocabulary-chunked forward KL vs the full one (forward + backward) at a 128K vocabulary.

Output of `python experiments/bench_chunked_kl.py` (41 s), measured on AMD EPYC, 2 cores visible
(shared with other jobs, so times are rough), 23.5 GiB RAM, torch 2.13.0+cpu, 2026-11-24:

    machine: AMD EPYC, 2 cores visible, torch 2.13.0+cpu (2 threads), 23.5 GiB RAM, Linux 6.18.44-fc-v669
    shape: B=1 T=1024 V=128256, every position counted, chunk_size=8192
    one (B, T, V) float32 tensor = 525 MB
    dtype     variant  peak extra MB  time s         loss
    float32   full              2632    4.16     0.999688
    float32   chunked            702    4.52     0.999688
    float32   full/chunked peak memory = 3.7x (of which the .grad buffer both need: 525 MB), |loss difference| = 6.0e-08
    bfloat16  full              2632    7.19     0.999695
    bfloat16  chunked            456   11.18     0.999694
    bfloat16  full/chunked peak memory = 5.8x (of which the .grad buffer both need: 263 MB), |loss difference| = 4.8e-07

Reading: the full KL holds about five (B, T, V) float32 tensors at its peak whatever the input dtype;
the chunked KL holds the .grad buffer plus about five (B, T, chunk) float32 temporaries (~175 MB at
chunk 8192, ~50 MB at 2048), at about the same speed in float32 (bf16 -> float32 per chunk is slower
on this CPU).

Method. Every (dtype, variant) runs in a fresh subprocess (so one variant's freed memory cannot hide
another's). The subprocess builds student logits (B, T, V) with requires_grad and teacher logits
(B, T, V), every position counted (mask all ones: the worst case), then resets the kernel's peak-RSS
counter (``echo 5 > /proc/self/clear_refs``, Linux) and reads VmRSS as the baseline; after
``loss.backward()`` it reads VmHWM, the exact high-water mark of resident memory. "peak extra" =
VmHWM - baseline: everything forward + backward allocated on top of the inputs, the student's
``.grad`` buffer (B, T, V) in the logits' dtype included (both variants need it). Workers run with
``MALLOC_MMAP_THRESHOLD_=65536`` so that glibc unmaps every freed block over 64 KiB at once instead
of keeping freed heap pages (its default dynamic threshold retains blocks up to 32 MB, which would
add 100-200 MB of freed-but-resident pages to the chunked variant): RSS then follows live tensors.
Both variants see the same seeded inputs; the script prints the difference of their loss values.

Usage: python experiments/bench_chunked_kl.py [--seq 1024] [--vocab 128256] [--chunk 8192] [--dtypes float32 bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

import torch

from hybrid_distill import losses

VARIANTS = ("full", "chunked")
MB = 1e6
MMAP_THRESHOLD = 65536  # bytes; glibc serves larger blocks by mmap and unmaps them on free


def _proc_status_kb(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", open("/proc/self/status").read(), re.M).group(1))


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # Linux >= 4.0: VmHWM := VmRSS


def run_variant(variant: str, batch: int, seq: int, vocab: int, dtype: torch.dtype, chunk: int) -> dict:
    """One forward + backward in this process; returns peak extra memory, time and loss."""
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(batch, seq, vocab, generator=gen, dtype=dtype).requires_grad_()  # (B, T, V)
    teacher = torch.randn(batch, seq, vocab, generator=gen, dtype=dtype)  # (B, T, V)
    mask = torch.ones(batch, seq, dtype=torch.bool)  # (B, T)
    _reset_peak_rss()
    baseline_kb = _proc_status_kb("VmRSS")
    start = time.perf_counter()
    if variant == "full":
        loss = losses.forward_kl(student, teacher, mask)
    else:
        loss = losses.chunked_forward_kl(student, teacher, mask, chunk_size=chunk)
    loss.backward()
    seconds = time.perf_counter() - start
    peak_extra = (_proc_status_kb("VmHWM") - baseline_kb) * 1024
    return {"peak_extra_mb": peak_extra / MB, "seconds": seconds, "loss": loss.item()}


def machine() -> str:
    cpu = re.search(r"^model name\s*:\s*(.*)$", open("/proc/cpuinfo").read(), re.M)
    ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu.group(1) if cpu else platform.processor()}, {os.cpu_count()} cores visible, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), {ram_gib:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}"
    )


def spawn(variant: str, args: argparse.Namespace, dtype: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        variant,
        "--dtype",
        dtype,
        "--batch",
        str(args.batch),
        "--seq",
        str(args.seq),
        "--vocab",
        str(args.vocab),
        "--chunk",
        str(args.chunk),
    ]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=128256)  # Llama-3
    parser.add_argument("--chunk", type=int, default=losses.DEFAULT_VOCAB_CHUNK)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = run_variant(args.worker, args.batch, args.seq, args.vocab, getattr(torch, args.dtype), args.chunk)
        print(json.dumps(result))
        return

    print(f"machine: {machine()}")
    print(f"shape: B={args.batch} T={args.seq} V={args.vocab}, every position counted, chunk_size={args.chunk}")
    print(f"one (B, T, V) float32 tensor = {args.batch * args.seq * args.vocab * 4 / MB:.0f} MB")
    print(f"{'dtype':<9} {'variant':<8} {'peak extra MB':>13} {'time s':>7} {'loss':>12}")
    for dtype in args.dtypes:
        results = {variant: spawn(variant, args, dtype) for variant in VARIANTS}
        for variant, r in results.items():
            print(f"{dtype:<9} {variant:<8} {r['peak_extra_mb']:>13.0f} {r['seconds']:>7.2f} {r['loss']:>12.6f}")
        full, chunked = results["full"], results["chunked"]
        grad_mb = args.batch * args.seq * args.vocab * getattr(torch, dtype).itemsize / MB
        print(
            f"{dtype:<9} full/chunked peak memory = {full['peak_extra_mb'] / chunked['peak_extra_mb']:.1f}x "
            f"(of which the .grad buffer both need: {grad_mb:.0f} MB), "
            f"|loss difference| = {abs(full['loss'] - chunked['loss']):.1e}"
        )


if __name__ == "__main__":
    main()
