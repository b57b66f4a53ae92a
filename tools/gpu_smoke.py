"""Smoke run of every GPU path, one PASS/FAIL line per check (make gpu-smoke; about 3 minutes on one H100/H200).

  python3 tools/gpu_smoke.py [--out DIR] [--device cuda|cpu]

Checks, each against its reference:
  backend:<name>   hybrid forward + backward (Mamba-2 and Mamba-1 layers, fp32) on every scan backend present
                   (triton, triton_chunked, mamba_ssm where it imports) vs torch_chunked: logits and every gradient;
  train:tiny       python train.py trainer=gpu, the tiny preset (teacher pretrained for a few steps, distilled);
  train:llama3_2_1b  the Llama-3.2-1B preset shrunk, random weights, bf16, speed=fast (fused loss, compiled blocks);
  decode           the tiny run's student: static engine and CUDA-graph decoding of 8 tokens equal to eager;
  export           Bamba export of that student, loaded back with AutoModelForCausalLM: equal logits (and the
                   student directory itself through AutoModelForCausalLM);
  eval.py          python eval.py ckpt=<the tiny run> (quality, recall, throughput, speculative, samples; small).
The two training runs start first, in child processes, while the in-process checks run. Logs of the child processes
go to --out (default /tmp/gpu-smoke). --device cpu runs the same checks here (Triton under TRITON_INTERPRET=1, no
CUDA graphs), to try the script without a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHRUNK_TINY = [  # a few steps of everything; the teacher is pretrained (and cached) first
    "model.architecture.hidden_size=128",
    "model.architecture.intermediate_size=256",
    "model.architecture.head_dim=32",
    "model.recipe.pretrain_teacher.max_steps=30",
    "model.recipe.distill.max_steps=12",
    "model.recipe.distill.batch_size=8",
    "stage.val_every=6",
    "trainer.limit_val_batches=2",
]
SHRUNK_1B = [  # Llama-3.2-1B's layout (GQA 4:1, rope_scaling llama3, tied embeddings) at a tenth of its width
    "model=llama3_2_1b",
    "model.path=random",
    "model.architecture.num_hidden_layers=4",
    "model.architecture.hidden_size=512",
    "model.architecture.intermediate_size=2048",
    "model.architecture.num_attention_heads=8",
    "model.architecture.num_key_value_heads=2",
    "model.architecture.vocab_size=4096",
    "model.tokenizer.vocab_size=4096",
    "model.recipe.distill.max_steps=8",
    "model.recipe.distill.batch_size=4",
    "model.recipe.distill.seq_len=512",
    "stage.val_every=4",
    "trainer.limit_val_batches=2",
    "student.calibration_batches=2",
    "speed=fast",
]
EVAL_SMALL = [
    "suite.quality.max_batches=2",
    "suite.recall.multiples=[1]",
    "suite.recall.num_examples=4",
    "suite.throughput.prompt_lens=[64]",
    "suite.throughput.batches=[1]",
    "suite.throughput.new_tokens=8",
    "suite.throughput.repeats=1",
    "suite.speculative.num_prompts=2",
    "suite.speculative.max_new_tokens=8",
    "suite.samples.num_prompts=2",
    "suite.samples.max_new_tokens=8",
]


class Smoke:
    def __init__(self, out: Path, device: str):
        self.out, self.device, self.results = out, device, []
        out.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "HD_LOG_DIR": str(out / "runs"),
            "HD_CACHE_DIR": str(out / "cache"),
            "WANDB_MODE": "offline",
            "PYTHONUNBUFFERED": "1",
            # its own compile cache: never another job's half-written one
            "TORCHINDUCTOR_CACHE_DIR": str(out / "inductor"),
        }

    def check(self, name: str, fn) -> object:
        start = time.perf_counter()
        try:
            detail = fn()
        except Exception as err:  # a smoke run reports every failure and goes on
            (self.out / f"{name.replace(':', '_')}.traceback").write_text(traceback.format_exc())
            self.results.append(False)
            print(f"FAIL {name} ({time.perf_counter() - start:.0f} s): {type(err).__name__}: {err}", flush=True)
            return None
        self.results.append(True)
        print(f"PASS {name} ({time.perf_counter() - start:.0f} s){': ' + detail if detail else ''}", flush=True)
        return detail

    def start(self, script: str, args: list[str], log: str) -> subprocess.Popen:
        trainer = ["trainer=gpu"] if self.device == "cuda" else ["trainer=cpu"]
        cmd = [sys.executable, str(ROOT / script), *trainer, *args] if script == "train.py" else [
            sys.executable, str(ROOT / script), *args]  # fmt: skip
        return subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=open(self.out / log, "w"), stderr=subprocess.STDOUT)

    def wait(self, proc: subprocess.Popen, log: str) -> str:
        if proc.wait() != 0:
            tail = (self.out / log).read_text().strip().splitlines()[-3:]
            raise RuntimeError(f"exit {proc.returncode}; {self.out / log}: {' | '.join(tail)}")
        return ""


def relative_error(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))


def backend_parity(device: str, backend: str) -> str:
    """Forward and backward of a Mamba-2 + Mamba-1 + attention hybrid on `backend` vs torch_chunked."""
    import torch

    from hybrid_distill.models import build_student
    from hybrid_distill.models.teacher import build_random_teacher

    arch = dict(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, head_dim=32, max_position_embeddings=512)  # fmt: skip
    ids = torch.randint(0, 256, (2, 200), device=device)  # longer than a chunk of the chunked scans
    worst = []
    for mixer in ("mamba2", "mamba1"):
        runs = []
        for name in ("torch_chunked", backend):
            teacher = build_random_teacher(arch, seed=0).to(device)
            torch.manual_seed(0)
            student = build_student(teacher, pattern="MAM", mixer=mixer, conv_init="random", scan_backend=name)
            logits = student(ids).logits
            logits.float().pow(2).mean().backward()
            runs.append((logits.detach(), {n: p.grad for n, p in student.named_parameters() if p.grad is not None}))
        (ref, ref_grads), (got, got_grads) = runs
        errors = [relative_error(got, ref)] + [relative_error(got_grads[n], g) for n, g in ref_grads.items()]
        if not all(math.isfinite(e) and e < 2e-3 for e in errors) or ref_grads.keys() != got_grads.keys():
            raise AssertionError(f"{mixer}: relative error up to {max(errors):.2e} (> 2e-3) against torch_chunked")
        worst.append(f"{mixer} {max(errors):.1e}")
    return "max relative error " + ", ".join(worst)


def decode_equal(device: str, student_dir: Path) -> str:
    import torch

    from hybrid_distill.models import HybridForCausalLM
    from hybrid_distill.models.generation import generate

    student = HybridForCausalLM.from_pretrained(student_dir).to(device).eval()
    ids = torch.randint(0, student.config.vocab_size, (2, 16), device=device)
    eager = generate(student, ids, max_new_tokens=8, engine="eager")
    engines = {"static": generate(student, ids, max_new_tokens=8, engine="static", cuda_graph=False)}
    if device == "cuda":
        engines["cuda-graph"] = generate(student, ids, max_new_tokens=8, engine="static", cuda_graph=True)
    for name, tokens in engines.items():
        if not torch.equal(tokens, eager):
            raise AssertionError(f"{name} decoding differs from eager: {tokens.tolist()} vs {eager.tolist()}")
    return f"{' and '.join(engines)} == eager, 8 tokens x 2 rows"


def export_equal(device: str, student_dir: Path, out: Path) -> str:
    import torch
    from transformers import AutoModelForCausalLM

    from hybrid_distill.export.api import export_student
    from hybrid_distill.models import HybridForCausalLM

    report = export_student(student_dir, out / "exported")
    student = HybridForCausalLM.from_pretrained(student_dir).to(device).eval()
    ids = torch.randint(0, student.config.vocab_size, (2, 40), device=device)
    with torch.no_grad():
        ours = student(ids).logits
        errors = {}
        for name, path in (("bamba export", out / "exported"), ("student dir", student_dir)):
            loaded = AutoModelForCausalLM.from_pretrained(path).to(device).eval()
            errors[name] = relative_error(loaded(ids).logits, ours)
    if not all(e < 1e-3 for e in errors.values()):
        raise AssertionError(f"AutoModelForCausalLM logits differ: {errors}")
    return f"{report.format}: " + ", ".join(f"{k} rel. error {v:.1e}" for k, v in errors.items())


def evaluated(out: Path, run: Path) -> str:
    results = json.loads((run / "eval.json").read_text())
    quality = results.get("quality") or {}
    if not quality:
        raise AssertionError(f"{run / 'eval.json'} has no quality section")
    return ", ".join(f"{k} {v:.3g}" for k, v in quality.items() if isinstance(v, (int, float)))[:200]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/gpu-smoke"))
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    args = parser.parse_args()
    begin = time.perf_counter()
    smoke = Smoke(args.out, args.device)
    import torch
    import transformers
    import triton

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"gpu-smoke: {gpu}; torch {torch.__version__}, triton {triton.__version__}, "
          f"transformers {transformers.__version__}", flush=True)  # fmt: skip
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("FAIL cuda: torch sees no GPU")
    runs = smoke.out / "runs"
    tiny = smoke.start("train.py", [*SHRUNK_TINY, f"hydra.run.dir={runs / 'tiny'}"], "train_tiny.log")
    big = smoke.start("train.py", [*SHRUNK_1B, f"hydra.run.dir={runs / 'llama3_2_1b'}"], "train_llama3_2_1b.log")

    from hybrid_distill.ops.dispatch import available_backends

    for backend in ("triton", "triton_chunked", "mamba_ssm"):
        if backend in available_backends():
            smoke.check(f"backend:{backend}", lambda b=backend: backend_parity(args.device, b))
        else:
            print(f"SKIP backend:{backend} (not importable here)", flush=True)
    if smoke.check("train:tiny", lambda: smoke.wait(tiny, "train_tiny.log")) is not None:
        evaluation = smoke.start("eval.py", [f"ckpt={runs / 'tiny'}", *EVAL_SMALL, "logger=csv"], "eval.log")
        student_dir = runs / "tiny" / "student"
        smoke.check("decode", lambda: decode_equal(args.device, student_dir))
        smoke.check("export", lambda: export_equal(args.device, student_dir, smoke.out))
        smoke.check("eval.py", lambda: smoke.wait(evaluation, "eval.log") or evaluated(smoke.out, runs / "tiny"))
    smoke.check("train:llama3_2_1b", lambda: smoke.wait(big, "train_llama3_2_1b.log"))
    failed = smoke.results.count(False)
    print(f"gpu-smoke: {len(smoke.results) - failed} passed, {failed} failed in {time.perf_counter() - begin:.0f} s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
