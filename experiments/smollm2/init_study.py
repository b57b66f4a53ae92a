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
import math
import platform
import shlex
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


def eval_batches(tokenizer, seq_len: int, n_shakespeare: int) -> list[torch.Tensor]:
    """[(n, seq_len) windows from the held-out plays, (1, m) the modern English text]: token ids."""
    plays = shakespeare_documents()["validation"]["text"]
    rows = []
    for k in range(n_shakespeare):
        text = plays[k % len(plays)]
        ids = tokenizer(text[len(text) // 3 + k * 20000 :][: seq_len * 8])["input_ids"]
        rows.append(ids[:seq_len])
    return [torch.tensor(rows), torch.tensor([tokenizer(MODERN)["input_ids"][:seq_len]])]


def calibration_batches(tokenizer, seq_len: int, n: int, batch: int = 4) -> list[torch.Tensor]:
    plays = shakespeare_documents()["train"]["text"]
    rows = []
    for k in range(n):
        text = plays[(k * 7) % len(plays)]
        rows.append(tokenizer(text[len(text) // 2 :][: seq_len * 8])["input_ids"][:seq_len])
    ids = torch.tensor(rows)
    return list(ids.split(batch))


@torch.no_grad()
def score(model, batches: list[torch.Tensor], teacher_logps: list[torch.Tensor]) -> dict[str, float]:
    """Over all next tokens of `batches`: ppl, KL(teacher || student) per token (nats), top-1 agreement."""
    nll = kl = agree = n = 0.0
    for ids, teacher_logp in zip(batches, teacher_logps):
        logp = model_logits(model, ids)[:, :-1].float().log_softmax(-1)
        nll += float(-logp.gather(-1, ids[:, 1:, None]).sum())
        kl += float((teacher_logp.exp() * (teacher_logp - logp)).sum())
        agree += float((logp.argmax(-1) == teacher_logp.argmax(-1)).sum())
        n += ids[:, 1:].numel()
    return {"ppl": math.exp(nll / n), "kl": kl / n, "top1": agree / n}


def model_logits(model, ids: torch.Tensor) -> torch.Tensor:
    out = model(input_ids=ids) if hasattr(model, "model") else model(ids)  # HF teacher or hybrid student
    return out.logits


def zero_new_outputs(student):
    for i in student.config.mamba_layers:
        student.layers[i].mixer.out_proj.weight.data.zero_()
    return student


# option name -> (build_student kwargs, calibrate?, post-processing)
OPTIONS = {
    "zeroed (baseline)": ({}, False, zero_new_outputs),
    "reference (calibration_batches=0)": ({}, False, None),
    "reference, gate_norm=false": ({"gate_norm": False}, False, None),
    "calibrated (default)": ({}, True, None),
    "calibrated, gate_norm=false": ({"gate_norm": False}, True, None),
    "calibrated, conv_activation=identity": ({"conv_activation": "identity"}, True, None),
    "calibrated, conv_init=random": ({"conv_init": "random"}, True, None),
    "mamba1 zeroed (baseline)": ({"mixer": "mamba1"}, False, zero_new_outputs),
    "mamba1 reference": ({"mixer": "mamba1"}, False, None),
    "mamba1 calibrated (default)": ({"mixer": "mamba1"}, True, None),
}
MAMBA2 = [name for name in OPTIONS if not name.startswith("mamba1")]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75, 0.875])
    p.add_argument(
        "--options",
        nargs="+",
        default=MAMBA2,
        choices=list(OPTIONS),
        metavar="OPTION",
        help=f"default: the Mamba-2 options; all: {list(OPTIONS)}",
    )
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
        teacher_logps = [model_logits(teacher, b)[:, :-1].float().log_softmax(-1) for b in ids]
    rows = [("teacher", "-", score(teacher, ids, teacher_logps))]
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
            result = score(student, ids, teacher_logps)
            rows.append((name, ratio, result))
            print(f"{ratio} {name}: {result}  ({time.time() - start:.0f} s)", flush=True)
    table = ["| option | mamba_ratio | ppl | KL (nats/token) | top-1 agree |", "|---|---|---|---|---|"]
    table += [f"| {n} | {r} | {m['ppl']:,.1f} | {m['kl']:.3f} | {m['top1']:.3f} |" for n, r, m in rows]
    header = (
        f"Command: `OMP_NUM_THREADS=1 PYTHONPATH=src python {shlex.join(['experiments/smollm2/init_study.py'] + sys.argv[1:])}`  \n"
        f"Date: {datetime.date.today()}; machine: {platform.machine()} CPU, {platform.node()}, torch "
        f"{torch.__version__}, 1 thread; {time.time() - start:.0f} s.  \n"
        f"Eval: {' + '.join(f'{b.shape[0]} x {b.shape[1]}' for b in ids)} tokens ({args.eval_seqs} held-out "
        f"Shakespeare windows, then modern English sentences); calibration: {args.calib_seqs} x {args.seq_len} tokens of the training plays.\n"
    )
    text = header + "\n" + "\n".join(table) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
