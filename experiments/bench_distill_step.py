"""Benchmark: tokens/s of distillation training steps in a bare PyTorch loop (no Lightning) over the same modules a
`python train.py` run builds: the composed config's teacher, student, speed switches, DistillModule.training_step,
AdamW + schedule and gradient clipping, under the trainer's precision (bf16-mixed: autocast). It is the peer of the
Lightning path in experiments/train_throughput/ ("Lightning within 5 % of a bare loop"), and compares scan backends
side by side. CPU numbers are machine-specific: compare ratios, and quote absolute numbers only with the machine
line this script prints.

    python experiments/bench_distill_step.py [--steps 10] [--warmup 2] [--backends torch_ref,torch_chunked] \
        [--json out.json] [config overrides, e.g. model=llama3_2_1b model.path=random trainer=gpu speed=fast \
        stage.batch_size=4 stage.seq_len=2048]

Without overrides: the tiny preset with random weights, on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
import warnings

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

import hybrid_distill.cli  # noqa: F401  (registers ${launch_dir:}, which paths.* resolve through)
from hybrid_distill.lit.distill import DistillModule
from hybrid_distill.lit.settings import DistillLoss, OptimSettings, SpeedSettings, from_config
from hybrid_distill.lit.speed import prepare_frozen_teacher, prepare_trained
from hybrid_distill.paths import config_dir
from hybrid_distill.stages.student import student_from_config
from hybrid_distill.stages.teacher import random_teacher

PRECISIONS = {"32-true": None, "32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def compose_config(overrides: list[str]) -> DictConfig:
    """The config `python train.py <overrides>` would run, with random teacher weights and no calibration."""
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("train", overrides=["model.path=random", "student.calibration_batches=0", *overrides])


def device_of(cfg: DictConfig) -> torch.device:
    return torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu")


def tokens_per_second(cfg: DictConfig, steps: int, warmup: int) -> float:
    """Distillation steps of the config's modules in a bare loop; tokens/s over `steps` after `warmup` steps."""
    device, autocast_dtype = device_of(cfg), PRECISIONS[str(cfg.trainer.precision)]
    teacher, _ = random_teacher(cfg)
    student = student_from_config(cfg, teacher)
    speed = from_config(SpeedSettings, cfg.speed, "speed")
    prepare_frozen_teacher(teacher, speed)
    prepare_trained(student, speed)
    loss = from_config(DistillLoss, cfg.loss, "loss")
    module = DistillModule(
        teacher, student, loss, from_config(OptimSettings, cfg.stage, "stage"), steps + warmup, speed
    )
    module.to(device).train()
    warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer here: the step's self.log calls are no-ops
    optimizers = module.configure_optimizers()
    optimizer, scheduler = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
    batch_size, seq_len = int(cfg.stage.batch_size), int(cfg.stage.seq_len)
    ids = torch.randint(0, int(cfg.model.architecture.vocab_size), (batch_size, seq_len), device=device)  # (B, T)
    batch = {"input_ids": ids, "labels": ids}
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else contextlib.nullcontext()
    )
    for step in range(steps + warmup):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            step_loss = module.training_step(batch, step)
        step_loss.backward()
        if cfg.stage.grad_clip:
            torch.nn.utils.clip_grad_norm_(module.student.parameters(), float(cfg.stage.grad_clip))
        optimizer.step()
        scheduler.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * ids.numel() / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--backends", default=None, help="comma-separated scan backends, side by side")
    parser.add_argument("--json", default=None, help="write {backend: tokens/s} here")
    args, overrides = parser.parse_known_args()
    cfg = compose_config(overrides)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); model {cfg.model.name}, {cfg.mamba_ratio} hybrid, "
        f"batch {cfg.stage.batch_size} x {cfg.stage.seq_len}, precision {cfg.trainer.precision}",
        flush=True,
    )
    backends = args.backends.split(",") if args.backends else [str(cfg.scan_backend)]
    rates = {}
    for backend in backends:
        with open_dict(cfg):
            cfg.scan_backend = backend
        rates[backend] = tokens_per_second(cfg, args.steps, args.warmup)
        print(
            f"{backend:>14}: {rates[backend]:10.0f} tokens/s  ({rates[backend] / rates[backends[0]]:.2f}x)", flush=True
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tokens_per_sec": rates, "config": OmegaConf.to_container(cfg.stage, resolve=True)}, f)


if __name__ == "__main__":
    main()
