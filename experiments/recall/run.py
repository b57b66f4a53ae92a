"""Train small Transformer / hybrid / Mamba-2 models on MQAR from scratch and report held-out recall accuracy.

    python experiments/recall/run.py [--config experiments/recall/config.yaml] [--out experiments/recall/results]

Every (setting, model) trains `steps` steps on fresh MQAR batches (hybrid_distill.data.recall_tasks.mqar) with the
cross-entropy on the queried values only, then is scored teacher-forced on held-out examples
(hybrid_distill.eval.recall.score: fraction of queries answered right). Rows go to <out>/results.jsonl as they
finish; a markdown table is printed at the end. CPU only; threads: --threads.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM

from hybrid_distill import losses
from hybrid_distill.eval.recall import score
from hybrid_distill.data.recall_tasks import mqar
from hybrid_distill.models import build_student

HERE = Path(__file__).resolve().parent


def make_model(cfg: dict, pattern: str, seed: int):
    """A hybrid with the given pattern, every layer randomly initialised (Mamba mixers: standard Mamba-2 init)."""
    torch.manual_seed(seed)
    shell = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_hidden_layers=len(pattern),
            num_attention_heads=cfg["num_heads"],
            num_key_value_heads=cfg["num_heads"],
            head_dim=cfg["head_dim"],
            max_position_embeddings=4096,
        )
    )
    return build_student(shell, pattern=pattern, init="random", scan_backend="torch_chunked")


def train_and_score(cfg: dict, pattern: str, seq_len: int, pairs: int) -> dict:
    model = make_model(cfg, pattern, cfg["seed"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.98), weight_decay=0.1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg["lr"], total_steps=cfg["steps"], pct_start=0.1)
    train_rng = torch.Generator().manual_seed(cfg["seed"])
    test = mqar(cfg["vocab_size"], seq_len, pairs, cfg["test_examples"], torch.Generator().manual_seed(10_000))
    start = time.perf_counter()
    for _ in range(cfg["steps"]):
        batch = mqar(cfg["vocab_size"], seq_len, pairs, cfg["batch_size"], train_rng)
        logits = model(batch.input_ids).logits  # (B, T, V)
        loss = losses.cross_entropy(*losses.shift_for_next_token(logits, batch.labels))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    model.eval()
    with torch.no_grad():
        result = score(lambda ids: model(ids).logits, test, cfg["vocab_size"])
    return {
        "pattern": pattern,
        "seq_len": seq_len,
        "pairs": pairs,
        "steps": cfg["steps"],
        "final_train_loss": loss.item(),
        "accuracy": result["accuracy"],
        "queries": result["queries"],
        "params": sum(p.numel() for p in model.parameters()),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=HERE / "config.yaml")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load(args.config.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s)",
        flush=True,
    )
    rows = []
    with open(args.out / "results.jsonl", "a") as log:
        for seq_len, pairs in cfg["settings"]:
            for name, pattern in cfg["models"].items():
                row = {"model": name, **train_and_score(cfg, pattern, seq_len, pairs)}
                rows.append(row)
                log.write(json.dumps(row) + "\n")
                log.flush()
                print(json.dumps(row), flush=True)
    print("\n| model | pattern | (seq_len, pairs) | MQAR accuracy | final train loss | params | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['pattern']} | ({r['seq_len']}, {r['pairs']}) | {r['accuracy']:.3f} | "
            f"{r['final_train_loss']:.3f} | {r['params']:,} | {r['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
