"""A small byte-level BPE tokenizer with a Llama-3-style chat template, trained with HF
`tokenizers` and wrapped as a `transformers` fast tokenizer.

Downstream code (tokenize.py, collate.py, datamodules.py) only relies on the generic
`PreTrainedTokenizerBase` interface (`apply_chat_template`, `eos_token_id`, offsets), so a real
checkpoint's tokenizer (e.g. Llama-3-8B-Instruct's) drops in unchanged.
"""

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from hybrid_distill.atomic import publish_dir
from hybrid_distill.data.chat_tasks import chat_rows
from hybrid_distill.data.corpus import shakespeare_documents

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
ROLES = ("system", "user", "assistant")
ROLE_MARKERS = tuple(f"<|{role}|>" for role in ROLES)
SPECIAL_TOKENS = (BOS, EOS, PAD, *ROLE_MARKERS)

# Every turn is `<|role|>\n{content}<|eos|>`, like Llama-3's `<|start_header_id|>role<|end_header_id|>\n\n
# {content}<|eot_id|>`; the generation prompt is the assistant marker, and the model stops at <|eos|>.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unsupported chat role: ' + message['role']) }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
# Bump when the tokenizer recipe above changes, so cached tokenizers are rebuilt.
RECIPE_VERSION = "1"


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, out_dir: str | os.PathLike | None = None
) -> PreTrainedTokenizerFast:
    """Train byte-level BPE (digits split one per token, which helps small models do arithmetic)
    on `texts`; `tokenizer(text)` prepends <|bos|>; saved with `save_pretrained` if `out_dir`."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    bos_id = bpe.token_to_id(BOS)
    bpe.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
            ),
        ]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_MARKERS),
        chat_template=CHAT_TEMPLATE,
        model_max_length=1 << 20,
    )
    if out_dir is not None:
        tokenizer.save_pretrained(out_dir)
    return tokenizer


def corpus_fingerprint(texts: Sequence[str], vocab_size: int) -> str:
    """Cache key: vocabulary size, tokenizer recipe version and a hash of the training texts."""
    digest = hashlib.sha256(f"{RECIPE_VERSION}|{vocab_size}".encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    return f"bpe{vocab_size}-{digest.hexdigest()[:16]}"


def default_tokenizer_texts(num_chat_rows: int = 2000, seed: int = 0) -> list[str]:
    """Training texts of the default tokenizer: the Shakespeare training plays plus the
    rendered turns of generated chat tasks (so task words and phrasing get their own merges)."""
    plays = list(shakespeare_documents()["train"]["text"])
    turns = [m["content"] for row in chat_rows(num_chat_rows, seed) for m in row["messages"]]
    return plays + ["\n".join(turns)]


def load_or_train_tokenizer(
    cache_dir: str | os.PathLike, vocab_size: int = 2048, texts: Sequence[str] | None = None
) -> PreTrainedTokenizerBase:
    """The tokenizer trained on `texts` (default: `default_tokenizer_texts()`), loaded from
    `cache_dir/<vocab>-<corpus hash>` when present, else trained and written atomically
    (temporary directory + rename, so concurrent runs never see a half-written tokenizer)."""
    texts = default_tokenizer_texts() if texts is None else texts
    cache_dir = Path(cache_dir)
    target = cache_dir / corpus_fingerprint(texts, vocab_size)
    if not target.is_dir():  # (another process may finish first: then its copy is kept)
        publish_dir(target, lambda staging: train_tokenizer(texts, vocab_size, staging))
    return AutoTokenizer.from_pretrained(target)
