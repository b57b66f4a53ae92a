"""Why the attention-initialised start is bad, layer by layer: for SmolLM2-135M-Instruct, each Mamba-2 mixer variant
runs on the teacher's own hidden states at 8 depths, and its output is compared with the teacher attention's
output there: relative error ||attn - mixer||^2 / ||attn||^2 (1.0 = a mixer that outputs zero), as initialised
("raw") and after the least-squares calibration of models/calibrate.py ("calibrated").

    OMP_NUM_THREADS=1 PYTHONPATH=src python experiments/smollm2/init_layerwise.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from init_study import calibration_batches  # noqa: E402

from hybrid_distill.models import build_student  # noqa: E402
from hybrid_distill.models.calibrate import calibrate_mixer, capture_attention_io  # noqa: E402
from hybrid_distill.models.teacher import load_teacher  # noqa: E402
from hybrid_distill.stages.teacher import _smollm2_dir  # noqa: E402

LAYERS = [1, 4, 8, 12, 16, 20, 24, 28]


def set_(name, value):
    """A post-build edit of one mixer parameter group (to test one hypothesis at a time)."""

    def edit(m):
        if name == "dt_rows":
            m.in_proj.weight.data[m.in_proj_rows("dt")] = value
        elif name == "dt":  # constant dt = value: dt rows 0, dt_bias = softplus^-1(value)
            m.in_proj.weight.data[m.in_proj_rows("dt")] = 0.0
            m.dt_bias.data.fill_(value + math.log(-math.expm1(-value)))
        elif name == "A":
            m.A_log.data.fill_(math.log(value))
        elif name == "D":
            m.D.data.fill_(value)
        elif name == "C_scale":  # 1/sqrt(head_dim) on C, as softmax attention scales q.k
            m.in_proj.weight.data[m.in_proj_rows("C")] *= value

    return edit


VARIANTS = {
    "default (reference values)": ({}, []),
    "C scaled by 1/sqrt(head_dim)": ({}, [set_("C_scale", 1 / 8)]),
    "D = 0 (no x skip)": ({}, [set_("D", 0.0)]),
    "dt rows of in_proj = 0 (dt = softplus(dt_bias))": ({}, [set_("dt_rows", 0.0)]),
    "constant dt = 1, A = 0.1 (slow decay)": ({}, [set_("dt", 1.0), set_("A", 0.1)]),
    "constant dt = 0.1, A = 1": ({}, [set_("dt", 0.1), set_("A", 1.0)]),
    "constant dt = 1, A = 1e-6 (no decay: growing linear attention)": ({}, [set_("dt", 1.0), set_("A", 1e-6)]),
    "gate_norm = false": ({"gate_norm": False}, []),
    "gate = false": ({"gate": False}, []),
    "conv_activation = identity": ({"conv_activation": "identity"}, []),
    "conv_init = random": ({"conv_init": "random"}, []),
}


def main() -> None:
    teacher, tokenizer = load_teacher(_smollm2_dir(), "SmolLM2-135M-Instruct.Q4_1.gguf", "float32")
    io, mask = capture_attention_io(teacher.eval(), calibration_batches(tokenizer, 256, 4), LAYERS)
    print(f"layers {LAYERS}; 4 x 256 tokens of the training plays\n")
    print("| variant | raw: mean (min-max) | calibrated: mean | calibrated per layer |\n|---|---|---|---|")
    for name, (kwargs, edits) in VARIANTS.items():
        torch.manual_seed(0)
        student = build_student(teacher, mamba_ratio=1.0, **kwargs).eval()
        raw, cal = [], []
        for i in LAYERS:
            mixer = student.layers[i].mixer
            for edit in edits:
                edit(mixer)
            report = calibrate_mixer(mixer, *io[i], mask)
            raw.append(report["rel_err_before"])
            cal.append(report["rel_err_after"])
        print(
            f"| {name} | {sum(raw) / len(raw):.3g} ({min(raw):.3g}-{max(raw):.3g}) | {sum(cal) / len(cal):.3f} | "
            f"{' '.join(f'{e:.2f}' for e in cal)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
