"""Sizing probe for the SmolLM2 study on a GPU: distillation tokens/s and MFU of the 135M pair through train.py itself
(random weights of the SmolLM2 shape, the embedded text, Lightning, the study's trainer and speed switches), per
setting, one run at a time. The study's budget (STEPS x BATCH) is chosen from its output (README).

    python experiments/smollm2/probe_speed.py [--steps 60] [--settings fast:32 fast:64 default:32]

Each setting `speed:batch` is one `python train.py model=smollm2_135m model.path=random speed=<speed>
model.recipe.distill.batch_size=<batch> ...` run; its tokens/s (Lightning's ThroughputMonitor, last window) and MFU
(hybrid_distill.lit.flops.MFUMonitor) are read from its metrics.csv.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def probe(speed: str, batch: int, steps: int, out: Path, extra: list[str]) -> dict:
    run = out / f"{speed}_{batch}"
    args = [
        sys.executable, str(ROOT / "train.py"), "model=smollm2_135m", "model.path=random", "trainer=gpu",
        "mamba_ratio=0.5", f"speed={speed}", f"model.recipe.distill.batch_size={batch}",
        "model.recipe.distill.seq_len=512", f"model.recipe.distill.max_steps={steps}", "stage.val_every=100000",
        "trainer.limit_val_batches=1", "student.calibration_batches=0", "logger=csv", f"hydra.run.dir={run}", *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - start
    (out / f"{speed}_{batch}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        return {"setting": f"{speed}:{batch}", "error": done.stderr.strip().splitlines()[-1:]}
    metrics = pd.read_csv(next(run.glob("distill/metrics.csv")))
    last = metrics.dropna(subset=["train/device/items_per_sec"]).iloc[-1]
    mfu = metrics["train/mfu"].dropna() if "train/mfu" in metrics else pd.Series(dtype=float)
    return {
        "setting": f"{speed}:{batch}",
        "tokens_per_s": round(float(last["train/device/items_per_sec"])),
        "mfu": round(float(mfu.iloc[-1]), 4) if len(mfu) else None,
        "peak_memory_gib": round(float(metrics["train/peak_memory_gib"].dropna().iloc[-1]), 1)
        if "train/peak_memory_gib" in metrics
        else None,
        "wall_s": round(wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--settings", nargs="+", default=["fast:32", "fast:64", "default:32"])
    parser.add_argument("--out", type=Path, default=Path("/tmp/probe"))
    parser.add_argument("extra", nargs="*", help="more train.py overrides")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for setting in args.settings:
        speed, batch = setting.split(":")
        print(probe(speed, int(batch), args.steps, args.out, args.extra), flush=True)


if __name__ == "__main__":
    main()
