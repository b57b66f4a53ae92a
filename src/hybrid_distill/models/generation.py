"""Token-by-token generation with the hybrid's cache: prefill the prompt once, then one recurrent step per token, on
the static engine (models/static_engine.py) or the eager reference."""

from __future__ import annotations

import torch

from . import static_engine


def next_token(
    logits: torch.Tensor,  # (B, V)
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:  # (B,)
    """Greedy argmax, or a sample from softmax(logits / temperature) restricted to top_k and then to top_p."""
    if not do_sample:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token once the tokens ranked above it already reach top_p (the top one always stays)
        drop = probs.cumsum(-1) - probs >= top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


def _check_args(max_new_tokens, do_sample, temperature, top_k, top_p) -> None:
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if do_sample and not temperature > 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


ENGINES = ("static", "eager")


@torch.no_grad()
def generate(
    model,
    input_ids: torch.Tensor,  # (B, T) prompts; right-padded per attention_mask (static engine only)
    max_new_tokens: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | list[int] | None = None,
    generator: torch.Generator | None = None,
    attention_mask: torch.Tensor | None = None,
    engine: str = "static",
    cuda_graph: bool | None = None,
    check_every: int = 16,
) -> torch.Tensor:  # (B, T + n), n <= max_new_tokens
    """Append up to `max_new_tokens` tokens. A row that emitted an EOS is filled with pad_token_id (or its first EOS
    id) from then on; generation stops early once every row has finished.

    engine="static" (models/static_engine.py): preallocated in-place caches, a decode step without host syncs,
    captured in a CUDA graph on CUDA devices (`cuda_graph`: None = there); whether every row has finished is read
    back every `check_every` steps only, and the output is cut where the eager loop would have stopped. It accepts
    right-padded prompts (attention_mask with trailing zeros): each row continues from its own last real token, and
    its new tokens are at T.. like every row's. engine="eager": the reference (states replaced every step, a host
    check every step), prompts of equal length only."""
    _check_args(max_new_tokens, do_sample, temperature, top_k, top_p)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if check_every < 1:
        raise ValueError(f"check_every must be >= 1, got {check_every}")
    if engine == "eager":
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError(
                "engine='eager' needs unpadded prompts of equal length; attention_mask has padding (zeros) "
                "(engine='static' continues right-padded rows)"
            )
        cache = model.new_cache()
        logits = model(input_ids, cache=cache, logits_to_keep=1).logits[:, -1]  # (B, V)

        def step(tok: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, V)
            return model(tok[:, None], cache=cache).logits[:, -1]

        check_every = 1
    else:
        logits, step = static_engine.start(model, input_ids, max_new_tokens, attention_mask, cuda_graph)
    eos = pad = None
    if eos_token_id is not None:
        eos = torch.tensor(
            [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id), device=input_ids.device
        )
        pad = model.config.pad_token_id if model.config.pad_token_id is not None else int(eos[0])

    def pick(logits: torch.Tensor) -> torch.Tensor:
        return next_token(logits, do_sample, temperature, top_k, top_p, generator)

    new = decode_loop(logits, step, pick, max_new_tokens, eos, pad, check_every)
    return torch.cat([input_ids, new.to(input_ids.dtype)], dim=1)


def decode_loop(
    logits: torch.Tensor,  # (B, V) after the prompts
    step,  # tokens (B,) -> logits (B, V)
    pick,  # logits (B, V) -> tokens (B,)
    max_new_tokens: int,
    eos: torch.Tensor | None,  # (E,) stop tokens
    pad: int | None,
    check_every: int,
) -> torch.Tensor:  # (B, n)
    """The token loop of both engines. EOS bookkeeping stays on the device; `finished.all()` is read back every
    `check_every` steps (the loop's only host sync), and the result is cut after the first step at which every row
    had finished, as if it had been checked every step."""
    batch, device = logits.shape[0], logits.device
    new = torch.zeros(batch, max_new_tokens, dtype=torch.long, device=device)  # (B, N)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)  # (B,)
    all_finished = torch.zeros(max_new_tokens, dtype=torch.bool, device=device)  # (N,): after each step
    for s in range(max_new_tokens):
        tok = pick(logits)  # (B,)
        if eos is not None:
            tok = tok.masked_fill(finished, pad)
            finished |= torch.isin(tok, eos)
            all_finished[s] = finished.all()
        new[:, s] = tok
        if s == max_new_tokens - 1 or (eos is not None and (s + 1) % check_every == 0 and bool(finished.all())):
            break
        logits = step(tok)
    if eos is not None and bool(all_finished.any()):
        return new[:, : int(all_finished.int().argmax()) + 1]
    return new
