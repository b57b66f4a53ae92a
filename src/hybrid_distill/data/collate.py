"""Right-padding collation of tokenized rows into tensors.

Every column named `*input_ids` is padded with the pad id and gets a matching
`*attention_mask` (1 = token, 0 = padding); every `*labels` column is padded with -100. All
columns of a batch share one length T (the longest row), so chosen and rejected sequences of a
preference batch can be concatenated along the batch dimension.
"""

from collections.abc import Mapping, Sequence

import torch
from transformers import PreTrainedTokenizerBase

from hybrid_distill.data.tokenize import IGNORE_INDEX


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The tokenizer's pad id, else its EOS id (Llama-3 has no pad token; padding is masked anyway)."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad nor an EOS token to pad with")


class RightPadCollator:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: Sequence[Mapping[str, Sequence[int] | torch.Tensor]]) -> dict[str, torch.Tensor]:
        length = max(len(values) for row in rows for values in row.values())  # T
        batch = {}
        for name in rows[0]:
            if name.endswith("input_ids"):
                batch[name] = self._pad([row[name] for row in rows], length, self.pad_id)  # (B, T) long
                mask_name = name.removesuffix("input_ids") + "attention_mask"
                batch[mask_name] = self._pad([torch.ones(len(row[name])) for row in rows], length, 0)  # (B, T)
            elif name.endswith("labels"):
                batch[name] = self._pad([row[name] for row in rows], length, IGNORE_INDEX)  # (B, T) long
            else:
                raise ValueError(f"cannot collate column {name!r}: expected *input_ids or *labels columns only")
        return batch

    @staticmethod
    def _pad(sequences: list, length: int, value: int) -> torch.Tensor:
        out = torch.full((len(sequences), length), value, dtype=torch.long)  # (B, T)
        for i, seq in enumerate(sequences):
            out[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        return out
