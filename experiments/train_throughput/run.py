"""Training throughput through `python train.py` itself: distillation steps vs plain fine-tuning of the teacher alone
(stage=sft_teacher), each with the plain path and with speed=fast, at the largest batch that fits, plus the bare-loop
peer of each distillation run (experiments/bench_distill_step.py, same modules and batch). Writes results.md (the
table, with GPU, date and versions) and results.json under --out. README.md beside this file says what is measured.

    python experiments/train_throughput/run.py                     # the H200 matrix (1B and 8B, 2K and 8K)
    python experiments/train_throughput/run.py --presets llama3_2_1b --seq-lens 2048 --variants distill,sft
    python experiments/train_throughput/run.py --toy               # tiny model on the CPU, 3 steps (the test)
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# name -> (stage, what trains, overrides)
VARIANTS = {
    "distill": ("distill", "Mamba mixers", ["speed=default"]),
    "distill_fast": ("distill", "Mamba mixers", ["speed=fast"]),
    "distill_all_ckpt": (
        "distill",
        "everything",
        ["speed=fast", "student.trainable=all", "speed.activation_checkpointing=true"],
    ),
    "sft": ("sft_teacher", "everything (teacher)", ["speed=default"]),
    "sft_fast": ("sft_teacher", "everything (teacher)", ["speed=fast"]),
}
COLUMNS = [
    "preset",
    "seq",
    "variant",
    "trains",
    "batch",
    "tokens/s",
    "MFU",
    "peak GiB",
    "vs sft",
    "Lightning vs bare",
]
TOY_SHAPE = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=16)
OUT_OF_MEMORY = ("CUDA out of memory", "OutOfMemoryError", "CUBLAS_STATUS_ALLOC_FAILED")


@dataclass
class Result:
    preset: str
    seq: int
    variant: str
    trains: str
    batch: int | None  # None: no batch size fitted
    tokens_per_sec: float | None
    mfu: float | None
    peak_gib: float | None
    bare_tokens_per_sec: float | None = None
    command: str = ""


def module_overrides(args) -> list[str]:
    """What shapes the modules and where they run, shared with the bare loop (which sets model.path=random and
    student.calibration_batches=0 itself)."""
    toy = [f"model.architecture.{k}={v}" for k, v in TOY_SHAPE.items()] if args.toy else []
    return [f"trainer={'cpu' if args.toy else 'gpu'}", *toy, *args.extra]


def common_overrides(args, steps: int) -> list[str]:
    """What every run of the matrix shares: random weights, the trainer, no calibration or checkpoints, one
    validation batch, metrics of every step, the MFU timing every 5 steps and tokens/s over the last 10."""
    return [
        "model.path=random",
        *module_overrides(args),
        "logger=csv",
        "student.calibration_batches=0",
        "callbacks.model_checkpoint=null",
        "callbacks.progress_bar.style=lines",
        f"trainer.max_steps={steps}",
        f"++stage.val_every={steps}",
        "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
        f"callbacks.mfu.every={min(5, steps)}",
        f"callbacks.throughput.window_size={min(10, steps - 1)}",
    ]


def read_metrics(run_dir: Path, stage: str, warmup: int) -> tuple[float | None, float | None, float | None]:
    """(tokens/s, MFU, peak GiB) of a finished run: medians of what was logged after `warmup` steps (compile and
    allocator warm-up), from <run dir>/<stage>/metrics.csv."""
    rows = list(csv.DictReader((run_dir / stage / "metrics.csv").open()))

    def median(key: str) -> float | None:
        values = [float(r[key]) for r in rows if r.get(key) not in (None, "") and int(r["step"]) >= warmup]
        return statistics.median(values) if values else None

    return median("train/device/items_per_sec"), median("train/mfu"), median("train/peak_memory_gib")


def run_train(overrides: list[str], run_dir: Path, env: dict) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
    print("$", " ".join(command[1:]), flush=True)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)


def out_of_memory(done: subprocess.CompletedProcess) -> bool:
    return any(marker in done.stdout + done.stderr for marker in OUT_OF_MEMORY)


def largest_batch_run(args, preset: str, seq: int, variant: str, env: dict) -> Result:
    """The variant at each batch size of --batches, largest first, until one runs (out of memory: the next)."""
    stage, trains, overrides = VARIANTS[variant]
    for batch in sorted(args.batches, reverse=True):
        run_dir = args.out / "runs" / f"{preset}-{seq}-{variant}-b{batch}"
        shutil.rmtree(run_dir, ignore_errors=True)
        full = [
            f"model={preset}",
            f"stage={stage}",
            f"stage.batch_size={batch}",
            f"stage.seq_len={seq}",
            *overrides,
            *common_overrides(args, args.steps),
        ]
        done = run_train(full, run_dir, env)
        (run_dir / "stdout.log").parent.mkdir(parents=True, exist_ok=True)
        (run_dir / "stdout.log").write_text(done.stdout + done.stderr)
        shutil.rmtree(run_dir / "student", ignore_errors=True)  # the 8B student is 32 GB of float32
        if done.returncode == 0:
            rate, mfu, peak = read_metrics(run_dir, stage, args.warmup)
            command = "python train.py " + " ".join(full)
            return Result(preset, seq, variant, trains, batch, rate, mfu, peak, command=command)
        if not out_of_memory(done):
            raise SystemExit(f"{variant} at batch {batch} failed (not out of memory); see {run_dir / 'stdout.log'}")
        print(f"  batch {batch}: out of memory", flush=True)
    return Result(preset, seq, variant, trains, None, None, None, None)


def bare_loop(args, result: Result, env: dict) -> float | None:
    """tokens/s of the same distillation variant and batch in experiments/bench_distill_step.py."""
    stage, _, overrides = VARIANTS[result.variant]
    out = args.out / "runs" / f"{result.preset}-{result.seq}-{result.variant}-bare.json"
    command = [
        sys.executable,
        str(REPO / "experiments" / "bench_distill_step.py"),
        f"--steps={args.steps - args.warmup}",
        f"--warmup={args.warmup}",
        f"--json={out}",
        f"model={result.preset}",
        f"stage.batch_size={result.batch}",
        f"stage.seq_len={result.seq}",
        *overrides,
        *module_overrides(args),
    ]
    print("$", " ".join(command[1:]), flush=True)
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    out.with_suffix(".log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        print(f"  bare loop failed: see {out.with_suffix('.log')}", flush=True)
        return None
    return next(iter(json.loads(out.read_text())["tokens_per_sec"].values()))


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def table(results: list[Result]) -> str:
    """The markdown table: one row per run, ratios against the same preset and length's plain sft run and against
    the run's bare loop."""
    sft = {(r.preset, r.seq): r.tokens_per_sec for r in results if r.variant == "sft"}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        base = sft.get((r.preset, r.seq))
        cells = [
            r.preset,
            str(r.seq),
            r.variant,
            r.trains,
            "out of memory" if r.batch is None else str(r.batch),
            fmt(r.tokens_per_sec, ",.0f"),
            fmt(None if r.mfu is None else 100 * r.mfu, ".1f") + ("" if r.mfu is None else " %"),
            fmt(r.peak_gib, ".1f"),
            fmt(r.tokens_per_sec / base if r.tokens_per_sec and base else None, ".2f"),
            fmt(
                r.tokens_per_sec / r.bare_tokens_per_sec if r.tokens_per_sec and r.bare_tokens_per_sec else None, ".2f"
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def environment() -> str:
    """What the numbers were measured on: device, date, versions, commit."""
    import torch

    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    versions = ", ".join(f"{p} {version(p)}" for p in ("torch", "transformers", "lightning"))
    return f"{device}; {datetime.date.today().isoformat()}; {versions}; commit {commit.strip() or '?'}"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="llama3_2_1b,llama3_8b")
    parser.add_argument("--seq-lens", default="2048,8192")
    parser.add_argument("--batches", default="1,2,4,8,16", help="batch sizes to try, the largest that fits is kept")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=15, help="steps left out of the medians (compile, allocator)")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-loop peers")
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "train_throughput" / "results")
    parser.add_argument("--toy", action="store_true", help="tiny model on the CPU: checks the runner, not the speed")
    parser.add_argument("extra", nargs="*", help="more overrides for every run, e.g. scan_backend=triton")
    args = parser.parse_args(argv)
    if args.toy:
        args.presets, args.seq_lens, args.steps, args.warmup = "tiny", "32", 3, 0
        args.batches = "2"
    args.batches = [int(b) for b in args.batches.split(",")]
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HD_LOG_DIR": str(args.out / "runs"), "WANDB_MODE": "offline"}
    results = []
    for preset in args.presets.split(","):
        for seq in map(int, args.seq_lens.split(",")):
            for variant in args.variants.split(","):
                result = largest_batch_run(args, preset, seq, variant, env)
                if VARIANTS[variant][0] == "distill" and result.batch is not None and not args.no_bare:
                    result.bare_tokens_per_sec = bare_loop(args, result, env)
                results.append(result)
                (args.out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    text = f"Measured on {environment()}.\n\n{table(results)}\n"
    (args.out / "results.md").write_text(text)
    print(text)
    return args.out / "results.md"


if __name__ == "__main__":
    main()
