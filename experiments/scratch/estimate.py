"""Estimated H200 device time of each from-scratch study, from its configs (no GPU needed; an estimate, not a measure).

    python experiments/scratch/estimate.py [--mfu 0.1 0.3] [--peak-tflops 989]

For every member of every study's sweep: the sized model (models/sizing.py, exact parameter count N), its tokens
D = max_steps * batch_size * seq_len, and its training FLOPs

    6 N D                                    (matmuls, forward + backward; the tied LM head included in N)
  + 12 * attention layers * T * d_attn * D   (attention scores and values, full T x T as the kernels compute it)
  + 18 * Mamba layers * d_inner * N_state * D   (the scan: ~6 FLOPs per state element and token, x3 with backward)

divided by an assumed sustained rate of mfu x peak (the H200's dense bf16 peak is about 989 TFLOP/s). Small models
and the Mamba scans reach a small fraction of the peak, so the table gives two rates. Evaluation, data loading,
start-up and the corpus generation (its own estimate in the README) are not included.
"""

from __future__ import annotations

import argparse

from hydra import compose, initialize_config_dir

import hybrid_distill.cli  # noqa: F401  (registers the resolvers the configs use)
from hybrid_distill.models.allocation import ATTENTION, MAMBA
from hybrid_distill.models.sizing import Sized
from hybrid_distill.paths import config_dir
from hybrid_distill.stages.scratch import sized_from_config

STUDIES = ("arch_small", "arch_large", "attention")


def sweep_members(cfg) -> list[list[str]]:
    """The overrides of every member of a config's sweep (hydra.sweeper.params: key -> "a,b,c")."""
    members: list[list[str]] = [[]]
    for key, values in cfg.hydra.sweeper.params.items():
        members = [m + [f"{key}={v}"] for m in members for v in str(values).split(",")]
    return members


def study_members(study: str) -> list[tuple[list[str], object]]:
    """(overrides, composed config) of every run of `experiment=scratch/<study>`."""
    with initialize_config_dir(config_dir(), version_base="1.3"):
        base = compose("train", overrides=[f"experiment=scratch/{study}"], return_hydra_config=True)
        return [
            (member, compose("train", overrides=[f"experiment=scratch/{study}", *member]))
            for member in sweep_members(base)
        ]


def training_flops(sized: Sized, tokens: int, seq_len: int) -> float:
    c = sized.config
    attention = c.pattern.count(ATTENTION) * 12 * seq_len * c.num_attention_heads * c.head_dim
    scan = c.pattern.count(MAMBA) * 18 * c.num_attention_heads * c.head_dim * c.head_dim
    return (6 * sized.params + attention + scan) * tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mfu", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    rates = [m * args.peak_tflops * 1e12 for m in args.mfu]
    head = " | ".join(f"minutes at {m:.0%} MFU" for m in args.mfu)
    print(f"| study | run | parameters | tokens | PFLOPs | {head} |")
    print("|---|---|---|---|---|" + "---|" * len(rates))
    for study in STUDIES:
        total = 0.0
        for member, cfg in study_members(study):
            sized = sized_from_config(cfg)
            tokens = int(cfg.stage.max_steps) * int(cfg.stage.batch_size) * int(cfg.stage.seq_len)
            flops = training_flops(sized, tokens, int(cfg.stage.seq_len))
            total += flops
            minutes = " | ".join(f"{flops / r / 60:.1f}" for r in rates)
            print(
                f"| {study} | {','.join(member)} | {sized.params:,} | {tokens / 1e6:.0f}M | {flops / 1e15:.0f} | {minutes} |"
            )
        minutes = " | ".join(f"**{total / r / 60:.0f}**" for r in rates)
        print(f"| {study} | all | | | {total / 1e15:.0f} | {minutes} |")


if __name__ == "__main__":
    main()
