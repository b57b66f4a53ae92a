"""Data: embedded Shakespeare corpus, a small BPE tokenizer with a chat template, generated chat
tasks and preference pairs, loaders for UltraChat / UltraFeedback-style datasets, tokenisation
via `datasets.map`, collators and LightningDataModules."""

from hybrid_distill.data.chat_tasks import TASKS, TaskExample, chat_dataset, preference_dataset, task_examples
from hybrid_distill.data.collate import RightPadCollator, pad_token_id
from hybrid_distill.data.corpus import shakespeare_documents, shakespeare_text
from hybrid_distill.data.datamodules import ChatDataModule, PreferenceDataModule, TextDataModule
from hybrid_distill.data.loaders import load_chat_dataset, load_preference_dataset, load_train_val
from hybrid_distill.data.schemas import DataRowError, with_responses
from hybrid_distill.data.tokenize import IGNORE_INDEX, pack_text, tokenize_chat, tokenize_preference, tokenize_prompts
from hybrid_distill.data.tokenizer import load_or_train_tokenizer, train_tokenizer

__all__ = [
    "IGNORE_INDEX",
    "TASKS",
    "ChatDataModule",
    "DataRowError",
    "PreferenceDataModule",
    "RightPadCollator",
    "TaskExample",
    "TextDataModule",
    "chat_dataset",
    "load_chat_dataset",
    "load_or_train_tokenizer",
    "load_preference_dataset",
    "load_train_val",
    "pack_text",
    "pad_token_id",
    "preference_dataset",
    "shakespeare_documents",
    "shakespeare_text",
    "task_examples",
    "tokenize_chat",
    "tokenize_preference",
    "tokenize_prompts",
    "train_tokenizer",
    "with_responses",
]
