"""Benchmark: tokens/s of one distillation training step (teacher forward + student forward/backward + AdamW)
on the tiny preset, per scan backend, side by side in one process. CPU numbers are machine-specific: compare
the ratios, and quote absolute numbers only with the machine line this script prints.

    .venv/bin/python experiments/bench_distill_step.py [--steps 10] [--backends torch_ref,torch_chunked]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hybrid_distill.paths import config_dir
from hybrid_distill.lit.distill import DistillModule
from hybrid_distill.lit.settings import DistillLoss, OptimSettings, from_config
from hybrid_distill.models import build_student, set_trainable
from hybrid_distill.models.teacher import build_random_teacher


def tiny_config():
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("train")


def tokens_per_second(backend: str, architecture, recipe, loss: DistillLoss, steps: int) -> float:
    teacher = build_random_teacher(architecture, seed=0)
    student = set_trainable(build_student(teacher, mamba_ratio=0.5, scan_backend=backend), "mamba")
    module = DistillModule(teacher, student, loss, OptimSettings(lr=1e-3), max_steps=steps + 2)
    optimizer = module.configure_optimizers()["optimizer"]
    ids = torch.randint(0, architecture["vocab_size"], (recipe["batch_size"], recipe["seq_len"]))
    batch = {"input_ids": ids, "labels": ids}
    module.train()
    for step in range(steps + 2):  # two warm-up steps
        if step == 2:
            start = time.perf_counter()
        optimizer.zero_grad()
        module.training_step(batch, step).backward()
        optimizer.step()
    return steps * ids.numel() / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--backends", default="torch_ref,torch_chunked")
    args = parser.parse_args()
    cfg = tiny_config()
    architecture = OmegaConf.to_container(cfg.model.architecture)
    recipe = OmegaConf.to_container(cfg.model.recipe.distill)
    loss = from_config(DistillLoss, cfg.loss, "loss")  # the default mix, kl_sft
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); tiny preset, ratio 0.5, batch {recipe['batch_size']} x {recipe['seq_len']}"
    )
    rates = {b: tokens_per_second(b, architecture, recipe, loss, args.steps) for b in args.backends.split(",")}
    base = next(iter(rates.values()))
    for backend, rate in rates.items():
        print(f"{backend:>14}: {rate:8.0f} tokens/s  ({rate / base:.2f}x of {next(iter(rates))})")


if __name__ == "__main__":
    main()
