"""Sizing probe for the SmolLM2 study on a GPU (random weights of the SmolLM2-135M shape, no data, no Lightning):
distillation steps/s per mixer and scan backend (batch 16 x 512, bf16 autocast, fused AdamW, Mamba mixers
training), alone and with N copies of the step running in parallel processes, and teacher generation tokens/s at
the seqkd batch. The study's step counts and prompt counts were chosen from its output (README).

    PYTHONPATH=src python experiments/smollm2/probe_speed.py [--parallel 8]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import torch

from hybrid_distill import losses
from hybrid_distill.models import build_student, set_trainable
from hybrid_distill.models.teacher import build_random_teacher

SMOLLM2 = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
)


def steps_per_second(mixer: str, backend: str, steps: int = 20, batch: int = 16, seq: int = 512) -> float:
    teacher = build_random_teacher(SMOLLM2).cuda().eval()
    student = set_trainable(build_student(teacher, mamba_ratio=0.5, mixer=mixer, scan_backend=backend), "mamba").cuda()
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4, fused=True)
    ids = torch.randint(0, SMOLLM2["vocab_size"], (batch, seq), device="cuda")
    for step in range(steps + 3):
        if step == 3:
            torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            with torch.no_grad():
                t_logits = teacher(input_ids=ids).logits[:, :-1]
            s_logits = student(ids).logits[:, :-1]
            loss = losses.divergence("kl", s_logits, t_logits) + losses.cross_entropy(s_logits, ids[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def _worker(args):
    return steps_per_second(*args)


def generation_tokens_per_second(batch: int = 256, prompt: int = 200, new: int = 64) -> float:
    teacher = build_random_teacher(SMOLLM2).cuda().eval()
    ids = torch.randint(0, SMOLLM2["vocab_size"], (batch, prompt), device="cuda")
    teacher.generate(ids, max_new_tokens=4, do_sample=False)
    torch.cuda.synchronize()
    start = time.perf_counter()
    teacher.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False)
    torch.cuda.synchronize()
    return batch * new / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    for mixer, backend in (("mamba2", "triton"), ("mamba2", "torch_chunked"), ("mamba1", "torch_chunked")):
        print(f"{mixer}/{backend}: {steps_per_second(mixer, backend):.2f} steps/s alone (16 x 512)")
    with mp.get_context("spawn").Pool(args.parallel) as pool:
        rates = pool.map(_worker, [("mamba2", "triton")] * args.parallel)
    print(
        f"mamba2/triton x{args.parallel} processes: {sum(rates):.2f} steps/s together "
        f"({min(rates):.2f}-{max(rates):.2f} each)"
    )
    print(f"teacher generate, batch 256: {generation_tokens_per_second():.0f} new tokens/s")


if __name__ == "__main__":
    main()
