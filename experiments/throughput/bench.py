"""Decode throughput and memory of a Llama-shaped teacher vs its hybrid, one process, same GPU, same inputs.

Both models have random weights (speed does not depend on them) in bf16: the teacher is built from a preset's
architecture (conf/model/<preset>.yaml, default Llama-3-8B), the hybrid from it with build_student (default
mamba_ratio 0.875: attention kept in 4 of 32 layers, as in the paper). For every (prompt length L, batch B) each
model prefills L random tokens (in chunks, logits of the last position only) and then decodes `--new-tokens`
greedily after `--warmup` untimed steps (hybrid_distill.eval.throughput.measure_generation). The ratio of decode
tokens/s is printed per setting. `--hybrid-batches` adds hybrid-only rows at the longest L with batches the
teacher's KV cache would not fit (the throughput a fixed GPU gets from each model). A setting that runs out of GPU
memory is recorded as `oom` and the run goes on. Rows are appended to <out>/rows.jsonl as they finish.

Engines (`--engines`, each setting runs on each): `eager` (the reference: HF LlamaForCausalLM with DynamicCache for
the teacher, HybridCache for the hybrid), `static` (preallocated in-place caches, models/static_engine.py; the
teacher as the ratio-0 student sharing its weights) and `cuda-graph` (static, each decode step replayed from a CUDA
graph). Every row has its memory floor: the bytes a decode step must read (weights, KV of the context, recurrent
states read and rewritten; eval/throughput.py) divided by the rate of a `--copy-gib` device-to-device copy measured
at the start of the same run, and wall (and GPU) time per step over that floor.

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

from hybrid_distill.eval.decoders import ENGINES
from hybrid_distill.eval.throughput import add_floor, copy_rate, measure_generation
from hybrid_distill.models import build_student, teacher_as_student
from hybrid_distill.models.teacher import llama_config
from hybrid_distill.ops import resolve_backend
from hybrid_distill.paths import config_dir


def random_teacher(preset: str, device: torch.device, dtype: torch.dtype) -> LlamaForCausalLM:
    architecture = yaml.safe_load((Path(config_dir()) / "model" / f"{preset}.yaml").read_text())["architecture"]
    with torch.device(device):  # initialise on the GPU directly, in bf16 (an 8B model in fp32 would need 32 GB)
        return LlamaForCausalLM._from_config(llama_config(architecture), dtype=dtype).eval()


def measure(model, name: str, engine: str, L: int, B: int, args, vocab: int) -> dict:
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
            engine=engine,
        )
        row = add_floor(row, args.copy_rate)
    except torch.cuda.OutOfMemoryError:
        row = {"engine": engine, "prompt_len": L, "batch": B, "oom": True}
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"model": name, **row}


HEADER = (
    "| model | engine | L | batch | decode tok/s | ms/step (wall) | GPU ms/step (kernels) | floor ms/step "
    "| wall / floor | GPU / floor | prefill tok/s | state GiB | peak extra GiB | hybrid/teacher decode tok/s "
    "| hybrid/teacher GPU time |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _num(value, spec: str, suffix: str = "") -> str:
    return "" if value is None else f"{value:{spec}}{suffix}"


def fmt(row: dict) -> str:
    if row.get("oom"):
        return f"| {row['model']} | {row['engine']} | {row['prompt_len']} | {row['batch']} | OOM |" + " |" * 10
    gib = (row["peak_extra_bytes"] or 0) / 2**30
    ratios = [row.get("decode_speedup_vs_teacher"), row.get("device_time_ratio_vs_teacher")]
    cells = [
        row["model"],
        row["engine"],
        row["prompt_len"],
        row["batch"],
        f"{row['decode_tok_s']:.1f}",
        f"{row['ms_per_step']:.2f}",
        _num(row.get("device_ms_per_step"), ".2f"),
        f"{row['floor_ms']:.2f}",
        f"{row['wall_over_floor']:.1f}x",
        _num(row.get("gpu_over_floor"), ".1f", "x"),
        f"{row['prefill_tok_s']:.0f}",
        f"{row['state_bytes'] / 2**30:.2f}",
        f"{gib:.2f}",
        *("" if r is None else f"**{r:.2f}x**" for r in ratios),
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


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
    parser.add_argument(
        "--engines", nargs="+", choices=ENGINES, help="default: all three on CUDA, eager and static on a CPU"
    )
    parser.add_argument(
        "--copy-gib", type=float, help="size of the copy that measures the copy rate (default 2 on CUDA, 1/16 on CPU)"
    )
    parser.add_argument("--out", type=Path, default=Path("throughput_out"))
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of the script (e.g. --preset tiny)")
    args = parser.parse_args()
    device = torch.device(args.device)
    args.engines = args.engines or [e for e in ENGINES if device.type == "cuda" or e != "cuda-graph"]
    args.copy_gib = args.copy_gib or (2.0 if device.type == "cuda" else 1 / 16)
    if "cuda-graph" in args.engines and device.type != "cuda":
        raise SystemExit("error: engine cuda-graph needs --device cuda; pick --engines eager static on a CPU")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    teacher = random_teacher(args.preset, device, torch.bfloat16)
    hybrid = build_student(teacher, mamba_ratio=args.ratio, scan_backend=args.scan_backend).eval()
    vocab = teacher.config.vocab_size
    # the static engines run the teacher as the ratio-0 student holding the same tensors (no second copy)
    shared = teacher_as_student(teacher)
    models = {("teacher", "eager"): teacher} | {("teacher", e): shared for e in ENGINES[1:]}
    models |= {("hybrid", e): hybrid for e in ENGINES}
    args.copy_rate = copy_rate(device, int(args.copy_gib * 2**30))
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
        "engines": args.engines,
        "copy_rate_gb_s": args.copy_rate / 1e9,
        "copy_gib": args.copy_gib,
        "build_s": time.perf_counter() - start,
        "weights_gib": {
            name: sum(p.numel() * p.element_size() for p in m.parameters()) / 2**30
            for name, m in (("teacher", teacher), ("hybrid", hybrid))
        },
    }
    for name, engine in [(n, e) for e in args.engines for n in ("teacher", "hybrid")]:  # untimed: compile, grow
        model = models[name, engine]
        try:
            measure_generation(model, 256, 1, 2, vocab, warmup=2, prefill_chunk=args.prefill_chunk, engine=engine)
        except Exception as err:  # noqa: BLE001 - a fast scan kernel failing here must not cost the whole run
            if name == "teacher" or meta["scan_backend"] == "torch_chunked":
                raise
            meta["scan_backend_error"] = f"{meta['scan_backend']}: {type(err).__name__}: {err}"
            hybrid.config.scan_backend = meta["scan_backend"] = "torch_chunked"  # the mixers share this config
            measure_generation(model, 256, 1, 2, vocab, warmup=2, prefill_chunk=args.prefill_chunk, engine=engine)
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
            for engine in args.engines:
                group = {name: measure(models[name, engine], name, engine, L, B, args, vocab) for name in names}
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
        f"{meta['scan_backend']}; decode {args.new_tokens} tokens after a prefill of L; copy rate "
        f"{meta['copy_rate_gb_s']:.0f} GB/s (read + written, {args.copy_gib} GiB copy); total "
        f"{time.perf_counter() - start:.0f} s"
    )
    print(HEADER)
    for row in rows:
        print(fmt(row))


if __name__ == "__main__":
    main()
