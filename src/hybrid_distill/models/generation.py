"""Token-by-token generation with the hybrid's cache: prefill the prompt once, then one recurrent step per token."""

from __future__ import annotations

import torch


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


@torch.no_grad()
def generate(
    model,
    input_ids: torch.Tensor,  # (B, T) prompts of equal length, no padding
    max_new_tokens: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | list[int] | None = None,
    generator: torch.Generator | None = None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:  # (B, T + n), n <= max_new_tokens
    """Append up to `max_new_tokens` tokens. A row that emitted an EOS is filled with pad_token_id (or its first EOS
    id) from then on; generation stops early once every row has finished. Left-padded batches are not supported:
    prompts must have equal length (an attention_mask with zeros raises)."""
    _check_args(max_new_tokens, do_sample, temperature, top_k, top_p)
    if attention_mask is not None and not bool(attention_mask.all()):
        raise ValueError("generate() needs unpadded prompts of equal length; attention_mask has padding (zeros)")
    eos = None
    if eos_token_id is not None:
        eos = torch.tensor(
            [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id), device=input_ids.device
        )
        pad = model.config.pad_token_id if model.config.pad_token_id is not None else int(eos[0])
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    cache = model.new_cache()
    tokens = [input_ids]
    logits = model(input_ids, cache=cache, logits_to_keep=1).logits[:, -1]  # (B, V)
    for step in range(max_new_tokens):
        tok = next_token(logits, do_sample, temperature, top_k, top_p, generator)  # (B,)
        if eos is not None:
            tok = tok.masked_fill(finished, pad)
            finished |= torch.isin(tok, eos)
        tokens.append(tok[:, None])
        if step == max_new_tokens - 1 or bool(finished.all()):
            break
        logits = model(tok[:, None], cache=cache).logits[:, -1]
    return torch.cat(tokens, dim=1)
