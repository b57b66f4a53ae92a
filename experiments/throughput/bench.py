"""Decode throughput and memory of a Llama-shaped teacher vs its hybrid, one process, same GPU, same inputs.

Both models have random weights (speed does not depend on them) in bf16: the teacher is built from a preset's
architecture (conf/model/<preset>.yaml, default Llama-3-8B), the hybrid from it with build_student (default
mamba_ratio 0.875: attention kept in 4 of 32 layers, as in the paper). For every (prompt length L, batch B) each
model prefills L random tokens (in chunks, logits of the last position only) and then decodes `--new-tokens`
greedily after `--warmup` untimed steps (hybrid_distill.eval.throughput.measure_generation). The ratio of decode
tokens/s is printed per setting. `--hybrid-batches` adds hybrid-only rows at the longest L with batches the
teacher's KV cache would not fit (the throughput a fixed GPU gets from each model). A setting that runs out of GPU
memory is recorded as `oom` and the run goes on. Rows are appended to <out>/rows.jsonl as they finish.

Usage (on a GPU machine, from the repository root):
    PYTHONPATH=src:. python experiments/throughput/bench.py --lens 1024 4096 16384 32768 --batches 1 8 \
        --hybrid-batches 32 --out /tmp/throughput
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import transformers
import yaml
from transformers import LlamaForCausalLM

from hybrid_distill.eval.throughput import measure_generation
from hybrid_distill.models import build_student
from hybrid_distill.models.teacher import llama_config
from hybrid_distill.ops import resolve_backend
from hybrid_distill.paths import config_dir


def random_teacher(preset: str, device: torch.device, dtype: torch.dtype) -> LlamaForCausalLM:
    architecture = yaml.safe_load((Path(config_dir()) / "model" / f"{preset}.yaml").read_text())["architecture"]
    with torch.device(device):  # initialise on the GPU directly, in bf16 (an 8B model in fp32 would need 32 GB)
        return LlamaForCausalLM._from_config(llama_config(architecture), dtype=dtype).eval()


def measure(model, name: str, L: int, B: int, args, vocab: int) -> dict:
    try:
        row = measure_generation(
            model,
            L,
            B,
            args.new_tokens,
            vocab,
            warmup=args.warmup,
            prefill_chunk=args.prefill_chunk,
            profile_steps=args.profile_steps,
        )
    except torch.cuda.OutOfMemoryError:
        row = {"prompt_len": L, "batch": B, "oom": True}
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"model": name, **row}


HEADER = (
    "| model | L | batch | decode tok/s | ms/step (wall) | GPU ms/step (kernels) | prefill tok/s | state GiB "
    "| peak extra GiB | hybrid/teacher decode tok/s | hybrid/teacher GPU time |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def fmt(row: dict) -> str:
    if row.get("oom"):
        return f"| {row['model']} | {row['prompt_len']} | {row['batch']} | OOM | | | | | | | |"
    gib = (row["peak_extra_bytes"] or 0) / 2**30
    device_ms = row.get("device_ms_per_step")
    ratios = [row.get("decode_speedup_vs_teacher"), row.get("device_time_ratio_vs_teacher")]
    return (
        f"| {row['model']} | {row['prompt_len']} | {row['batch']} | {row['decode_tok_s']:.1f} | "
        f"{row['ms_per_step']:.2f} | {'' if device_ms is None else f'{device_ms:.2f}'} | "
        f"{row['prefill_tok_s']:.0f} | {row['state_bytes'] / 2**30:.2f} | {gib:.2f} | "
        + " | ".join("" if r is None else f"**{r:.2f}x**" for r in ratios)
        + " |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="llama3_8b")
    parser.add_argument("--ratio", type=float, default=0.875)
    parser.add_argument("--lens", type=int, nargs="+", default=[1024, 4096, 16384, 32768])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--hybrid-batches", type=int, nargs="*", default=[])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--prefill-chunk", type=int, default=2048)
    parser.add_argument("--scan-backend", default="auto")
    parser.add_argument(
        "--profile-steps", type=int, default=4, help="decode steps profiled for GPU kernel time per step (0: off)"
    )
    parser.add_argument("--out", type=Path, default=Path("throughput_out"))
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of the script (e.g. --preset tiny)")
    args = parser.parse_args()
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    teacher = random_teacher(args.preset, device, torch.bfloat16)
    hybrid = build_student(teacher, mamba_ratio=args.ratio, scan_backend=args.scan_backend).eval()
    vocab = teacher.config.vocab_size
    meta = {
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "preset": args.preset,
        "pattern": hybrid.config.pattern,
        "scan_backend": resolve_backend(args.scan_backend, device).name,
        "dtype": "bfloat16",
        "new_tokens": args.new_tokens,
        "warmup": args.warmup,
        "prefill_chunk": args.prefill_chunk,
        "build_s": time.perf_counter() - start,
        "weights_gib": {
            name: sum(p.numel() * p.element_size() for p in m.parameters()) / 2**30
            for name, m in (("teacher", teacher), ("hybrid", hybrid))
        },
    }
    for model in (teacher, hybrid):  # untimed: allocator growth, kernel compilation
        try:
            measure_generation(model, 256, 1, 2, vocab, warmup=2, prefill_chunk=args.prefill_chunk)
        except Exception as err:  # noqa: BLE001 - a fast scan kernel failing here must not cost the whole run
            if model is teacher or meta["scan_backend"] == "torch_chunked":
                raise
            meta["scan_backend_error"] = f"{meta['scan_backend']}: {type(err).__name__}: {err}"
            hybrid.config.scan_backend = meta["scan_backend"] = "torch_chunked"  # the mixers share this config
            measure_generation(model, 256, 1, 2, vocab, warmup=2, prefill_chunk=args.prefill_chunk)
    if args.profile_steps and device.type == "cuda":
        try:  # the profiler needs CUPTI; without it, wall-clock numbers only
            measure_generation(teacher, 256, 1, 1, vocab, warmup=1, profile_steps=1)
        except Exception as err:  # noqa: BLE001
            meta["profiler_error"] = f"{type(err).__name__}: {err}"
            args.profile_steps = 0
    print(json.dumps(meta), flush=True)
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2))
    rows = []
    settings = [(L, B, ("teacher", "hybrid")) for L in args.lens for B in args.batches]
    settings += [(max(args.lens), B, ("hybrid",)) for B in args.hybrid_batches]
    with open(args.out / "rows.jsonl", "a") as log:
        for L, B, names in settings:
            group = {
                name: measure({"teacher": teacher, "hybrid": hybrid}[name], name, L, B, args, vocab) for name in names
            }
            if len(group) == 2 and not any(r.get("oom") for r in group.values()):
                hybrid_row, teacher_row = group["hybrid"], group["teacher"]
                hybrid_row["decode_speedup_vs_teacher"] = hybrid_row["decode_tok_s"] / teacher_row["decode_tok_s"]
                if hybrid_row["device_ms_per_step"]:
                    hybrid_row["device_time_ratio_vs_teacher"] = (
                        teacher_row["device_ms_per_step"] / hybrid_row["device_ms_per_step"]
                    )
            for row in group.values():
                rows.append(row)
                log.write(json.dumps(row) + "\n")
                log.flush()
                print(fmt(row), flush=True)
    print(
        f"\nGPU: {meta['gpu']}; {meta['preset']} shape, hybrid pattern {meta['pattern']}, bf16, scan backend "
        f"{meta['scan_backend']}; decode {args.new_tokens} tokens after a prefill of L; total "
        f"{time.perf_counter() - start:.0f} s"
    )
    print(HEADER)
    for row in rows:
        print(fmt(row))


if __name__ == "__main__":
    main()
