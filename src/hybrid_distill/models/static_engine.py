"""The static generation engine: prefill into a StaticCache, then decode steps that write every state in place.

A decode step (`DecodeStep`) allocates no cache memory and reads nothing back to the host: attention writes its new
key/value at each row's length and attends over the whole fixed-size buffer under a mask, mixers' states are copied
into their buffers, lengths advance on the device. So on CUDA the step is captured once per generate call (one
graph per batch size and capacity: the buffers' addresses are baked into it) and replayed, which removes Python and
kernel-launch overhead from every token. Sampling, EOS bookkeeping and the token loop stay outside the graph
(models/generation.py): they take a handful of kernels per step and keep the user's torch.Generator usable.

Right-padded batches: rows are prefilled together up to the shortest row; the longer rows' remaining prompt tokens
are then fed one step at a time with `cache.active` masking the rows already done, so every row's states are those
after its own last real token and its generation starts there. The teacher decodes on the same engine as the ratio-0
student that shares its weights (build.teacher_as_student), which equals it.
"""

from __future__ import annotations

import torch

from .cache import StaticCache

WARMUP_STEPS = 2  # eager steps before capture (lazy initialisation, Triton autotuning), undone afterwards


class DecodeStep:
    """tokens (B,) -> next-token logits (B, V) on a prefilled StaticCache, eager or replayed from a CUDA graph.
    With a graph the logits tensor is reused: it is valid until the next call."""

    def __init__(self, model, cache: StaticCache, cuda_graph: bool = False):
        if cuda_graph and cache.lengths.device.type != "cuda":
            raise ValueError(f"cuda_graph=True needs the model on a CUDA device, it is on {cache.lengths.device}")
        self.model, self.cache, self.cuda_graph = model, cache, cuda_graph
        self.graph: torch.cuda.CUDAGraph | None = None

    def eager(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, 1) -> (B, V)
        return self.model(tokens, cache=self.cache, logits_to_keep=1).logits[:, -1]

    def __call__(self, tok: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, V)
        if not self.cuda_graph:
            return self.eager(tok[:, None])
        if self.graph is None:
            self._capture()
        self.cache.check_room(1)  # the graph cannot raise: check on the host
        self.tokens.copy_(tok[:, None])
        self.graph.replay()
        self.cache.seqlen += 1  # the graph advanced the lengths on the device, not the host-side count
        return self.logits

    def _capture(self) -> None:
        cache = self.cache
        if cache.seqlen == 0:
            raise RuntimeError("a decode step needs a prefilled cache (mixer buffers come from the first block)")
        self.tokens = torch.zeros(cache.batch, 1, dtype=torch.long, device=cache.lengths.device)  # (B, 1)
        saved = cache.save()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the default stream, as graph capture requires
            for _ in range(WARMUP_STEPS):
                self.eager(self.tokens)
                cache.restore(saved)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self.eager(self.tokens)  # (B, V), rewritten by every replay
        cache.restore(saved)  # capture ran no kernel but counted a token on the host


def row_lengths(attention_mask: torch.Tensor | None, shape: torch.Size) -> torch.Tensor | None:
    """Each row's number of real tokens (B,) from a right-padding mask; None when there is no padding."""
    if attention_mask is None:
        return None
    from .hybrid import check_right_padded  # hybrid imports generation, which imports this module

    if attention_mask.shape != shape:
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, input_ids {tuple(shape)}")
    check_right_padded(attention_mask)
    lengths = attention_mask.long().sum(1)  # (B,)
    if not bool((lengths > 0).all()):
        raise ValueError("attention_mask has a row without any real token (all zeros)")
    return None if bool((lengths == shape[1]).all()) else lengths


@torch.no_grad()
def prefill(model, cache: StaticCache, input_ids: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Feed right-padded prompts (B, T) with `lengths` (B,) real tokens (None: all T); returns the logits after each
    row's last real token (B, V)."""
    shortest = input_ids.shape[1] if lengths is None else int(lengths.min())
    logits = model(input_ids[:, :shortest], cache=cache, logits_to_keep=1).logits[:, -1]  # (B, V)
    for t in range(shortest, input_ids.shape[1]):  # the longer rows' remaining prompt tokens, one step each
        cache.active = lengths > t  # (B,)
        step = model(input_ids[:, t : t + 1], cache=cache, logits_to_keep=1).logits[:, -1]
        logits = torch.where(cache.active[:, None], step, logits)
    cache.active = None
    return logits


def start(
    model,
    input_ids: torch.Tensor,  # (B, T), right-padded per attention_mask
    max_new_tokens: int,
    attention_mask: torch.Tensor | None = None,
    cuda_graph: bool | None = None,  # None: on CUDA devices
) -> tuple[torch.Tensor, DecodeStep]:
    """Prefill a new StaticCache of capacity T + max_new_tokens: (logits after each prompt (B, V), its DecodeStep)."""
    lengths = row_lengths(attention_mask, input_ids.shape)
    cache = StaticCache(model, input_ids.shape[0], input_ids.shape[1] + max_new_tokens)
    if cuda_graph is None:
        cuda_graph = input_ids.device.type == "cuda"
    step = DecodeStep(model, cache, cuda_graph)
    return prefill(model, cache, input_ids, lengths), step
