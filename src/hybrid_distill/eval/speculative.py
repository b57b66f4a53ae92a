"""Speculative decoding with a hybrid target (MambaInLlama, after Leviathan et al. 2023), greedy.

Each round the draft proposes k tokens; the target scores the pending token and all k proposals in ONE forward
pass; proposals are accepted while they equal the target's own argmax, and the target's token at the first
mismatch (or after the last proposal) is appended too, so every round commits at least one token and the output is
exactly the target's greedy decoding.

States: a KV cache can drop rejected tokens, an SSM state cannot (it has folded them in). So before verifying, the
target's states are snapshotted, and when a proposal is rejected they are restored and only the accepted tokens are
run again (recompute from a snapshot, simpler than per-token state checkpoints); when all proposals are accepted
nothing is recomputed. The draft is rolled back the same way (a HF draft or an attention-only static one is cropped,
which costs nothing). On the static engine (default) the snapshot is a copy of the mixer states and the per-row
lengths; restoring copies them back into the same buffers, so the draft's single-token steps can be replayed from
a CUDA graph (engine "cuda-graph", the default on CUDA); the target's verification blocks run eagerly.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from ..models.generation import generate
from .decoders import make_decoder


@dataclass
class SpeculativeStats:
    rounds: int = 0
    proposed: int = 0  # draft tokens proposed
    accepted: int = 0  # draft tokens the target accepted
    committed: int = 0  # tokens generated (accepted + one target token per round)
    recomputed: int = 0  # tokens the target ran a second time after a rejection

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / max(self.proposed, 1)

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "acceptance_rate": self.acceptance_rate,
            "tokens_per_round": self.committed / max(self.rounds, 1),
        }


@torch.no_grad()
def speculative_generate(
    target: torch.nn.Module,
    draft: torch.nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    k: int = 4,
    eos_token_id: int | None = None,
    engine: str | None = None,
) -> tuple[torch.Tensor, SpeculativeStats]:
    """Greedy decoding of `target` sped up by `draft` proposals: returns (input_ids + new tokens (1, T + n), stats).
    One sequence at a time (acceptance differs per sequence). `engine`: of both decoders (eval/decoders.py; None:
    "cuda-graph" on CUDA, else "static")."""
    if input_ids.shape[0] != 1:
        raise ValueError(f"speculative decoding runs one sequence at a time; got a batch of {input_ids.shape[0]}")
    if k < 1:
        raise ValueError(f"k (draft tokens per round) must be >= 1, got {k}")
    if engine is None:
        engine = "cuda-graph" if input_ids.device.type == "cuda" else "static"
    capacity = input_ids.shape[1] + max_new_tokens  # what either model can have consumed by the end
    tgt, drf = (make_decoder(model, engine, batch=1, capacity=capacity) for model in (target, draft))
    if input_ids.shape[1] > 1:  # both models consume the prompt but its last token, which stays pending
        tgt.feed(input_ids[:, :-1], logits_to_keep=1)
        drf.feed(input_ids[:, :-1], logits_to_keep=1)
    pending = input_ids[:, -1:]  # (1, 1): the next token to feed, already part of the output
    stats, new = SpeculativeStats(), []
    while len(new) < max_new_tokens:
        kk = min(k, max_new_tokens - len(new) - 1)  # the round's own target token fills the last slot
        draft_snap, proposal, tok = drf.snapshot(), [], pending
        for _ in range(kk):
            tok = drf.feed(tok, logits_to_keep=1)[:, -1].argmax(-1, keepdim=True)  # (1, 1)
            proposal.append(tok)
        # the draft has consumed verify[:, :kk]: the pending token and all proposals but the last
        verify = torch.cat([pending, *proposal], dim=1)  # (1, kk + 1)
        target_snap = tgt.snapshot()
        choice = tgt.feed(verify).argmax(-1)  # (1, kk + 1): target's next token after each prefix of verify
        accepted = 0
        while accepted < kk and int(proposal[accepted]) == int(choice[0, accepted]):
            accepted += 1
        keep = verify[:, : accepted + 1]  # what both models must have consumed after this round
        if accepted < kk:  # target ran rejected tokens: back to the snapshot, rerun the accepted ones
            stats.recomputed += tgt.rollback(target_snap, keep)
        if accepted == kk:
            drf.feed(verify[:, kk:], logits_to_keep=1)  # the last proposal (or, with kk = 0, the pending token)
        elif accepted + 1 < kk:
            drf.rollback(draft_snap, keep)
        pending = choice[:, accepted : accepted + 1]
        committed = [int(t) for t in proposal[:accepted]] + [int(pending)]
        stats.rounds += 1
        stats.proposed += kk
        stats.accepted += accepted
        new += committed
        if eos_token_id is not None and eos_token_id in committed:
            new = new[: len(new) - len(committed) + committed.index(eos_token_id) + 1]
            break
    new = new[:max_new_tokens]
    stats.committed = len(new)
    return torch.cat([input_ids, torch.tensor([new], dtype=input_ids.dtype, device=input_ids.device)], 1), stats


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def speculative_benchmark(
    target: torch.nn.Module,
    draft: torch.nn.Module,
    prompts: list[torch.Tensor],
    max_new_tokens: int,
    k: int,
    eos_token_id: int | None = None,
) -> dict:
    """Plain greedy decoding of the target vs speculative decoding, same prompts, one process: acceptance rate,
    wall-clock speedup, and whether every output matched the target's own greedy output exactly."""
    plain_s = spec_s = 0.0
    total = SpeculativeStats()
    exact = True
    for ids in prompts:  # each (1, T)
        # the project's own decoding loop on the same cache: the plain baseline, without transformers' per-step work
        reference, seconds = _timed(generate, target, ids, max_new_tokens=max_new_tokens, eos_token_id=eos_token_id)
        plain_s += seconds
        (output, stats), seconds = _timed(speculative_generate, target, draft, ids, max_new_tokens, k, eos_token_id)
        spec_s += seconds
        exact &= torch.equal(output, reference)
        for field in ("rounds", "proposed", "accepted", "committed", "recomputed"):
            setattr(total, field, getattr(total, field) + getattr(stats, field))
    return {
        **total.as_dict(),
        "k": k,
        "prompts": len(prompts),
        "plain_seconds": plain_s,
        "speculative_seconds": spec_s,
        "speedup": plain_s / spec_s,
        "exact_match": exact,
    }
