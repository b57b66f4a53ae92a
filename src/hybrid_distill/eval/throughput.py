"""Generation throughput and memory: prefill L prompt tokens, then decode N tokens greedily, per model.

Measured per (model, prompt length, batch size): prefill and decode tokens/s, the inference state's size after
decoding (KV cache, conv and SSM states; exact on any device), and on CUDA the peak allocated memory of the run
above what was allocated before it (weights excluded). Models are measured back to back in the same process on the
same inputs, each setting `repeats` times in alternating order, so their ratio is meaningful and its spread is known;
the first `warmup` decode steps are run but not timed (kernel compilation, allocator growth). `engine` picks the
decoder (eval/decoders.py: eager, static, cuda-graph).

Memory floor: a decode step must at least read the weights (all but the input embedding table, of which it reads B
rows), the attention KV of the context so far, and read and rewrite the recurrent (conv + SSM) states;
`bytes_per_step` counts these at the mean context of the timed steps. Divided by the rate of a large device-to-device
copy measured in the same run (`copy_rate`) it is the time no implementation can beat on that device
(`floor_ms`); the ratio wall / floor says how far a decode step is from it.
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Iterable

import torch

from .decoders import make_decoder, prefill

COPY_REPEATS = 5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _decode(decoder, tok: torch.Tensor, steps: int) -> torch.Tensor:
    """`steps` greedy decode steps from tokens (B, 1); returns the last (B, 1)."""
    for _ in range(steps):
        tok = decoder.feed(tok, logits_to_keep=1)[:, -1].argmax(-1, keepdim=True)
    return tok


def device_ms_per_step(decoder, tok: torch.Tensor, steps: int) -> float:
    """GPU kernel time per decode step (sum of kernel durations, from the profiler): what a step costs once the
    host's launch overhead is hidden (e.g. by CUDA graphs). Eager decoding of small batches is often host-bound,
    so wall-clock ms/step can be several times this."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        _decode(decoder, tok, steps)
        torch.cuda.synchronize()
    return sum(event.self_device_time_total for event in prof.key_averages()) / 1000 / steps


def weight_bytes_read(model: torch.nn.Module) -> int:
    """Bytes of parameters a decode step reads: all of them (tied ones once) but an untied input embedding table."""
    unique = {p.data_ptr(): p.numel() * p.element_size() for p in model.parameters()}
    if hasattr(model, "get_input_embeddings"):  # HF
        embedding, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    else:
        embedding, head = model.embed_tokens.weight, model.lm_head.weight
    if embedding.data_ptr() != head.data_ptr():
        unique.pop(embedding.data_ptr())
    return sum(unique.values())


def kv_bytes_per_token(model: torch.nn.Module, batch: int) -> int:
    """Bytes of keys and values that one context position adds over the attention layers, for `batch` rows."""
    config = model.config
    pattern = getattr(config, "pattern", None)
    layers = pattern.count("A") if pattern is not None else config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = next(model.parameters()).element_size()
    return 2 * layers * batch * config.num_key_value_heads * head_dim * element


@torch.no_grad()
def copy_rate(device: torch.device, nbytes: int) -> float:
    """Bytes moved per second (read + written) by a device-to-device copy of `nbytes`: the memory-bound rate that
    the floor of a decode step is measured against."""
    src = torch.ones(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # untimed: first touch of the pages
    _sync(device)
    start = time.perf_counter()
    for _ in range(COPY_REPEATS):
        dst.copy_(src)
    _sync(device)
    return 2 * nbytes * COPY_REPEATS / (time.perf_counter() - start)


@torch.no_grad()
def measure_generation(
    model: torch.nn.Module,
    prompt_len: int,
    batch: int,
    new_tokens: int,
    vocab_size: int,
    seed: int = 0,
    warmup: int = 2,
    prefill_chunk: int | None = None,
    profile_steps: int = 0,
    engine: str = "eager",
) -> dict:
    """One measurement: random prompt tokens (the speed does not depend on their values). On CUDA with
    profile_steps > 0, that many more steps are decoded under the profiler for `device_ms_per_step`."""
    device = next(model.parameters()).device
    ids = torch.randint(0, vocab_size, (batch, prompt_len), generator=torch.Generator().manual_seed(seed)).to(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    held = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    capacity = prompt_len + warmup + new_tokens + profile_steps + 1
    decoder = make_decoder(model, engine, batch=batch, capacity=capacity)
    _sync(device)
    start = time.perf_counter()
    logits = prefill(decoder, ids, prefill_chunk)  # (B, V)
    _sync(device)
    prefill_s = time.perf_counter() - start
    tok = _decode(decoder, logits.argmax(-1, keepdim=True), warmup)  # (B, 1)
    _sync(device)
    start = time.perf_counter()
    tok = _decode(decoder, tok, new_tokens)
    _sync(device)
    decode_s = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) - held if device.type == "cuda" else None
    state_bytes = decoder.state_bytes()
    mean_context = prompt_len + warmup + (new_tokens + 1) / 2  # keys a timed step reads, on average
    bytes_per_step = (
        weight_bytes_read(model) + kv_bytes_per_token(model, batch) * mean_context + 2 * decoder.recurrent_bytes()
    )
    profiled = device_ms_per_step(decoder, tok, profile_steps) if device.type == "cuda" and profile_steps else None
    return {
        "engine": engine,
        "prompt_len": prompt_len,
        "batch": batch,
        "new_tokens": new_tokens,
        "prefill_s": prefill_s,
        "prefill_tok_s": batch * prompt_len / prefill_s,
        "decode_s": decode_s,
        "decode_tok_s": batch * new_tokens / decode_s,
        "ms_per_step": 1000 * decode_s / new_tokens,
        "device_ms_per_step": profiled,
        "state_bytes": state_bytes,
        "bytes_per_step": int(bytes_per_step),
        "peak_extra_bytes": peak,  # activations + states at their peak, weights and other models excluded
    }


def add_floor(row: dict, rate: float) -> dict:
    """`row` with its memory floor at `rate` bytes/s (copy_rate) and the ratios of wall and GPU time to it."""
    floor_ms = 1000 * row["bytes_per_step"] / rate
    device_ms = row.get("device_ms_per_step")
    return {
        **row,
        "copy_rate_gb_s": rate / 1e9,
        "floor_ms": floor_ms,
        "wall_over_floor": row["ms_per_step"] / floor_ms,
        "gpu_over_floor": None if device_ms is None else device_ms / floor_ms,
    }


def _median(values: list[float]) -> float:
    return statistics.median(values)


def summarise_repeats(runs: list[dict]) -> dict:
    """One row from repeated measurements of one setting: medians of the timings (a background process slows some
    repeats, not the median), with the decode tokens/s range (`decode_tok_s_min` / `_max`) as the spread."""
    decode = [r["decode_tok_s"] for r in runs]
    row = dict(runs[0])
    for key in ("prefill_s", "prefill_tok_s", "decode_s", "decode_tok_s", "ms_per_step"):
        row[key] = _median([r[key] for r in runs])
    row.update(repeats=len(runs), decode_tok_s_min=min(decode), decode_tok_s_max=max(decode))
    return row


def throughput_grid(
    models: dict[str, torch.nn.Module],
    prompt_lens: Iterable[int],
    batches: Iterable[int],
    new_tokens: int,
    vocab_size: int,
    warmup: int = 2,
    prefill_chunk: int | None = None,
    repeats: int = 3,
    engine: str = "eager",
) -> list[dict]:
    """Every model at every (prompt length, batch), measured `repeats` times; rows carry `model`, medians and spread
    (summarise_repeats), and the other models' rows get `decode_speedup_vs_<first model>`: the median over repeats
    of the decode tokens/s ratio, with its range as `decode_speedup_range_vs_<first model>`.

    Like with like: within a repeat the models run back to back on the same inputs, in alternating order from one
    repeat to the next, so that a load change on a shared machine slows both sides of a ratio rather than one."""
    if repeats < 1:
        raise ValueError(f"throughput repeats must be >= 1, got {repeats}")
    prompt_lens, batches = list(prompt_lens), list(batches)
    for model in models.values():  # untimed: first-call costs (allocations, kernel compilation, lazy init)
        measure_generation(
            model,
            min(prompt_lens),
            min(batches),
            1,
            vocab_size,
            warmup=warmup,
            prefill_chunk=prefill_chunk,
            engine=engine,
        )
    names = list(models)
    base_name = names[0]
    rows = []
    for prompt_len in prompt_lens:
        for batch in batches:
            runs: dict[str, list[dict]] = {name: [] for name in names}
            for repeat in range(repeats):
                for name in names if repeat % 2 == 0 else reversed(names):
                    runs[name].append(
                        measure_generation(
                            models[name],
                            prompt_len,
                            batch,
                            new_tokens,
                            vocab_size,
                            warmup=warmup,
                            prefill_chunk=prefill_chunk,
                            engine=engine,
                        )
                    )
            group = {name: {"model": name, **summarise_repeats(runs[name])} for name in names}
            for name in names[1:]:
                ratios = [own["decode_tok_s"] / base["decode_tok_s"] for own, base in zip(runs[name], runs[base_name])]
                group[name][f"decode_speedup_vs_{base_name}"] = _median(ratios)
                group[name][f"decode_speedup_range_vs_{base_name}"] = [min(ratios), max(ratios)]
            rows += group.values()
    return rows
