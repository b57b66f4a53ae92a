"""The hybrid as an lm-evaluation-harness model named `hybrid_distill` (loglikelihood, loglikelihood_rolling,
generate_until).

lm_eval (0.4.x) finds models in its registry, filled at import time from its own MODEL_MAPPING; it has no plugin
entry point. Importing this module registers `hybrid_distill`, so either run the harness through
`python -m hybrid_distill.eval.lm_eval_cli --model hybrid_distill --model_args pretrained=<dir> --tasks ...`, or
`import hybrid_distill.eval.lm_eval_adapter` before calling `lm_eval.simple_evaluate(model="hybrid_distill", ...)`.
`pretrained` is anything `python eval.py ckpt=` takes that holds a saved student (a student dir or a run dir).
"""

from __future__ import annotations

import torch
from lm_eval import utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from .. import losses
from ..data.collate import RightPadCollator, pad_token_id
from ..data.tokenize import IGNORE_INDEX
from ..models.generation import generate
from .loading import load_student, resolve_checkpoint
from .suite import resolve_device
from .recall import argmax_hits


@register_model("hybrid_distill")
class HybridLM(TemplateLM):
    def __init__(
        self,
        pretrained: str,
        device: str = "auto",
        batch_size: int | str = 8,
        max_length: int | None = None,
        scan_backend: str | None = None,
        add_bos_token: bool | None = None,
        **_harness_options,
    ):
        super().__init__()
        student, self.tokenizer = load_student(resolve_checkpoint(pretrained), None, None, scan_backend)
        self._device = resolve_device(device)
        self.model = student.to(self._device).eval()
        # "auto" (the harness's batch-size search) is not implemented: a fixed default instead
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 8
        self.max_length = int(max_length or self.model.config.max_position_embeddings)
        self.add_bos_token = add_bos_token  # None: the tokenizer's default, as lm_eval's `hf` model
        self.collate = RightPadCollator(pad_token_id(self.tokenizer))

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        """What an empty context is conditioned on: BOS when the tokenizer has one."""
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.eot_token_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        """As lm_eval's `hf` model (HFLM) encodes, so that both score a student and its export the same: special
        tokens as the caller, else add_bos_token, else the tokenizer's default say; none on a string that already
        starts with the prefix token (a rendered chat template)."""
        special = self.add_bos_token if add_special_tokens is None else add_special_tokens
        if add_special_tokens is None and string.startswith(self.tokenizer.decode(self.prefix_token_id)):
            special = False
        return self.tokenizer(string, **({} if special is None else {"add_special_tokens": special}))["input_ids"]

    def tok_decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    @torch.no_grad()
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """Each request: (key, context ids, continuation ids) -> (sum of the continuation's log-probs, whether every
        continuation token is the argmax). Each continuation token is predicted from at most max_length tokens (the
        last one is fed too, as HFLM's `[-(max_length + 1):]`, but its logits are not used)."""
        results = []
        for start in tqdm(range(0, len(requests), self.batch_size), disable=disable_tqdm, desc="loglikelihood"):
            rows = []
            for _, context, continuation in requests[start : start + self.batch_size]:
                ids = (list(context) + list(continuation))[-(self.max_length + 1) :]
                continuation = list(continuation)[-len(ids) :]
                rows.append(
                    {"input_ids": ids, "labels": [IGNORE_INDEX] * (len(ids) - len(continuation)) + list(continuation)}
                )
            batch = self.collate(rows)  # right-padded: a causal model ignores what follows
            logits = self.model(batch["input_ids"].to(self._device)).logits  # (B, T, V)
            labels = batch["labels"].to(self._device)
            logprobs = losses.sequence_logprobs(*losses.shift_for_next_token(logits, labels))  # (B,)
            hits, counted = argmax_hits(logits, labels)  # (B, T-1)
            greedy = (hits | ~counted).all(dim=1)
            results += [(float(lp), bool(g)) for lp, g in zip(logprobs, greedy)]
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of whole strings, scored in disjoint windows of max_length tokens (as HFLM does)."""
        windows, owners = [], []
        for index, (string,) in enumerate(req.args for req in requests):
            for window in map(
                utils.make_disjoint_window,
                utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string),
                    prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                ),
            ):
                windows.append((None, *window))
                owners.append(index)
        totals = [0.0] * len(requests)
        for owner, (logprob, _) in zip(owners, self._loglikelihood_tokens(windows, disable_tqdm)):
            totals[owner] += logprob
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy (or sampled, if the task asks) continuation, cut at the first stop string."""
        outputs = []
        for context, gen_kwargs in tqdm([req.args for req in requests], disable=disable_tqdm, desc="generate"):
            options = dict(gen_kwargs)
            until = options.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(options.pop("max_gen_toks", 256))
            do_sample = bool(options.pop("do_sample", False))
            temperature = float(options.pop("temperature", 1.0) or 1.0)
            ids = self.tok_encode(context)[-max(self.max_length - max_new, 1) :]
            prompt = torch.tensor([ids], device=self._device)
            out = generate(  # the project's own loop: greedy or plain sampling is all lm-eval tasks ask for here
                self.model,
                prompt,
                max_new_tokens=max_new,
                do_sample=do_sample and temperature > 0,
                temperature=temperature,
                eos_token_id=self.eot_token_id,
            )
            text = self.tok_decode(out[0, prompt.shape[1] :].tolist())
            for stop in until:
                text = text.split(stop)[0] if stop else text
            outputs.append(text)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        return outputs
