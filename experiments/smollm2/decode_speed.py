"""Decoding tokens/s of the ratio study's students beside their teacher, on the static engine (preallocated caches,
CUDA graphs on CUDA), in one process so the teacher loads once and every model is timed on the same GPU state.

    python experiments/smollm2/decode_speed.py <study dir> [--prompt-lens 512 2048] [--batches 1 16]

Writes <study dir>/decode_speed.json (eval.throughput rows: medians over repeats, their range, and each student's
speed-up over the teacher) and decode_speed.md (a table). The teacher is the study's: model.path and model.gguf_file
of its first run's config (where that run was trained).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from hybrid_distill.atomic import write_json_atomic
from hybrid_distill.eval.throughput import throughput_grid
from hybrid_distill.models import HybridForCausalLM
from hybrid_distill.models.teacher import load_teacher


def students(study: Path) -> dict[str, Path]:
    """{run name: student dir} of the study's finished runs, ordered by their mamba_ratio."""
    found = {}
    for student in study.glob("*/student"):
        ratio = OmegaConf.load(student.parent / ".hydra" / "config.yaml").mamba_ratio
        found[(float(ratio), student.parent.name)] = student
    return {name: path for (_, name), path in sorted(found.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", type=Path)
    parser.add_argument("--prompt-lens", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs = students(args.study)
    if not runs:
        raise SystemExit(f"{args.study}: no finished run (no */student)")
    cfg = OmegaConf.load(next(iter(runs.values())).parent / ".hydra" / "config.yaml")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    teacher, _ = load_teacher(cfg.model.path, cfg.model.gguf_file)
    models = {"teacher": teacher.to(device, dtype).eval()}
    for name, path in runs.items():
        models[name] = HybridForCausalLM.from_pretrained(path).to(device, dtype).eval()
    rows = throughput_grid(
        models,
        args.prompt_lens,
        args.batches,
        args.new_tokens,
        models["teacher"].config.vocab_size,
        warmup=3,
        repeats=args.repeats,
        engine="static",
    )
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    write_json_atomic(args.study / "decode_speed.json", {"device": device_name, "dtype": str(dtype), "rows": rows})
    lines = [
        f"Decoding on the static engine, {device_name}, {dtype}; median of {args.repeats} (range), {args.new_tokens} "
        "new tokens after a prompt of prompt_len",
        "",
        "| model | prompt_len | batch | decode tok/s | range | speed-up vs teacher (range) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        speedup = r.get("decode_speedup_vs_teacher")
        low_high = r.get("decode_speedup_range_vs_teacher")
        lines.append(
            f"| {r['model']} | {r['prompt_len']} | {r['batch']} | {r['decode_tok_s']:,.0f} | "
            f"{r['decode_tok_s_min']:,.0f}-{r['decode_tok_s_max']:,.0f} | "
            + (f"{speedup:.2f} ({low_high[0]:.2f}-{low_high[1]:.2f})" if speedup else "-")
            + " |"
        )
    (args.study / "decode_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({"device": device_name}))


if __name__ == "__main__":
    main()
