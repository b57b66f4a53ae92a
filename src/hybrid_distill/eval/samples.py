"""Greedy answers of the student and the teacher to the same held-out chat prompts, side by side."""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

from ..data.loaders import load_chat_dataset


def held_out_prompts(source: str, num_prompts: int) -> list[str]:
    """The first user turns of `num_prompts` rows of the source's test split (never trained on)."""
    rows = load_chat_dataset(source, split="test", num_rows=num_prompts)
    return [messages[0]["content"] for messages in rows["messages"]]


@torch.no_grad()
def greedy_samples(
    models: dict[str, torch.nn.Module],
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int,
    device: torch.device,
) -> list[dict[str, str]]:
    """One row per prompt: {"prompt", <model name>: its greedy answer, ...}; one prompt at a time (no padding)."""
    rows = []
    for prompt in prompts:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"].to(device)  # (1, T)
        row = {"prompt": prompt}
        for name, model in models.items():
            out = model.generate(
                ids,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            row[name] = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
        rows.append(row)
    return rows
