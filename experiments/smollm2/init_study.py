"""How far from the teacher does an untrained hybrid start? Perplexity, KL(teacher || student) per token and top-1
agreement of untrained SmolLM2-135M-Instruct students, per initialisation option and mamba_ratio, beside the teacher
and the zeroed-output baseline (new Mamba layers add nothing). CPU, float32, no gradients.

    OMP_NUM_THREADS=1 PYTHONPATH=src python experiments/smollm2/init_study.py [--ratios 0.25 0.5] [--options ...]

Eval text: held-out Shakespeare plays (the corpus' validation split) and plain modern English sentences written here;
calibration text (for the calibrated options): the training split, never the eval text.
Writes the markdown table to experiments/smollm2/init_study.md (with the command, date and machine).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import torch

from hybrid_distill.data.corpus import shakespeare_documents
from hybrid_distill.models import build_student
from hybrid_distill.models.calibrate import calibrate_student
from hybrid_distill.models.teacher import load_teacher
from hybrid_distill.stages.teacher import _smollm2_dir

MODERN = (
    "The city council met on Tuesday evening to discuss the new budget for public transport. Several residents "
    "complained that the buses are often late and that the trains are too crowded during the morning rush hour. "
    "The mayor promised to publish a detailed plan before the end of the year. In the meantime, the council will "
    "add two more buses to the busiest routes and extend the opening hours of the central station. "
    "My sister bought a small house near the river last spring. It needed a lot of work: the roof was leaking, the "
    "kitchen was old, and the garden had not been touched for years. She spent every weekend painting walls and "
    "fixing windows, and by the autumn the house was finally warm and dry. Now she grows tomatoes and herbs in the "
    "garden and invites her friends for dinner on Sundays. "
    "Scientists have found that regular exercise improves sleep, mood and memory. A short walk every day can lower "
    "blood pressure and reduce the risk of heart disease. Doctors recommend at least one hundred and fifty minutes "
    "of moderate activity each week, such as cycling, swimming or brisk walking, together with a balanced diet."
)


def eval_batches(tokenizer, seq_len: int, n_shakespeare: int) -> torch.Tensor:
    """(n, seq_len) token ids: windows from the middle of each held-out play, then the modern English text."""
    plays = shakespeare_documents()["validation"]["text"]
    rows = []
    for k in range(n_shakespeare):
        text = plays[k % len(plays)]
        ids = tokenizer(text[len(text) // 3 + k * 20000:][: seq_len * 8])["input_ids"]
        rows.append(ids[:seq_len])
    modern = tokenizer(MODERN)["input_ids"]
    if len(modern) >= seq_len:
        rows.append(modern[:seq_len])
    return torch.tensor(rows)


def calibration_batches(tokenizer, seq_len: int, n: int, batch: int = 4) -> list[torch.Tensor]:
    plays = shakespeare_documents()["train"]["text"]
    rows = []
    for k in range(n):
        text = plays[(k * 7) % len(plays)]
        rows.append(tokenizer(text[len(text) // 2:][: seq_len * 8])["input_ids"][:seq_len])
    ids = torch.tensor(rows)
    return list(ids.split(batch))


@torch.no_grad()
def score(logits: torch.Tensor, teacher_logp: torch.Tensor, ids: torch.Tensor) -> dict[str, float]:
    """ppl on next tokens, KL(teacher || student) per token (nats), top-1 agreement with the teacher."""
    logp = logits[:, :-1].float().log_softmax(-1)
    nll = -logp.gather(-1, ids[:, 1:, None]).mean()
    kl = (teacher_logp.exp() * (teacher_logp - logp)).sum(-1).mean()
    top1 = (logp.argmax(-1) == teacher_logp.argmax(-1)).float().mean()
    return {"ppl": float(nll.exp()), "kl": float(kl), "top1": float(top1)}


def zero_new_outputs(student):
    for i in student.config.mamba_layers:
        student.layers[i].mixer.out_proj.weight.data.zero_()
    return student


# option name -> (build_student kwargs, calibrate?, post-processing)
OPTIONS = {
    "zeroed (baseline)": ({}, False, zero_new_outputs),
    "reference (copy W_O, as before)": ({}, False, None),
    "reference, gate_norm=false": ({"gate_norm": False}, False, None),
    "reference, mamba1": ({"mixer": "mamba1"}, False, None),
    "calibrated": ({}, True, None),
    "calibrated, mamba1": ({"mixer": "mamba1"}, True, None),
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75, 0.875])
    p.add_argument("--options", nargs="+", default=list(OPTIONS))
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--eval-seqs", type=int, default=4, help="Shakespeare windows (plus one modern-English row)")
    p.add_argument("--calib-seqs", type=int, default=8)
    p.add_argument("--out", default=str(Path(__file__).with_name("init_study.md")))
    args = p.parse_args(argv)
    torch.manual_seed(0)
    start = time.time()
    teacher, tokenizer = load_teacher(_smollm2_dir(), "SmolLM2-135M-Instruct.Q4_1.gguf", "float32")
    teacher.eval()
    ids = eval_batches(tokenizer, args.seq_len, args.eval_seqs)
    calib = calibration_batches(tokenizer, args.seq_len, args.calib_seqs)
    with torch.no_grad():
        teacher_logits = teacher(input_ids=ids).logits
    teacher_logp = teacher_logits[:, :-1].float().log_softmax(-1)
    rows = [("teacher", "-", score(teacher_logits, teacher_logp, ids))]
    print(f"teacher: {rows[0][2]}", flush=True)
    for ratio in args.ratios:
        for name in args.options:
            kwargs, calibrate, post = OPTIONS[name]
            torch.manual_seed(0)
            student = build_student(teacher, mamba_ratio=ratio, **kwargs).eval()
            if calibrate:
                calibrate_student(student, teacher, calib)
            if post is not None:
                post(student)
            with torch.no_grad():
                result = score(student(ids).logits, teacher_logp, ids)
            rows.append((name, ratio, result))
            print(f"{ratio} {name}: {result}  ({time.time() - start:.0f} s)", flush=True)
    table = ["| option | mamba_ratio | ppl | KL (nats/token) | top-1 agree |", "|---|---|---|---|---|"]
    table += [f"| {n} | {r} | {m['ppl']:,.1f} | {m['kl']:.3f} | {m['top1']:.3f} |" for n, r, m in rows]
    header = (f"Command: `OMP_NUM_THREADS=1 PYTHONPATH=src python {' '.join(['experiments/smollm2/init_study.py'] + sys.argv[1:])}`  \n"
              f"Date: {datetime.date.today()}; machine: {platform.machine()} CPU, {platform.node()}, torch "
              f"{torch.__version__}, 1 thread; {time.time() - start:.0f} s.  \n"
              f"Eval: {ids.shape[0]} x {ids.shape[1]} tokens ({args.eval_seqs} held-out Shakespeare windows + modern "
              f"English); calibration: {args.calib_seqs} x {args.seq_len} tokens of the training plays.\n")
    text = header + "\n" + "\n".join(table) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
