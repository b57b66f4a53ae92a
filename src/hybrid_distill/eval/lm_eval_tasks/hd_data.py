"""The documents of the shipped lm-eval tasks: `custom_dataset: !function hd_data.load` in their YAMLs. lm-eval
imports this file by its path (not as part of the package), so it imports nothing from hybrid_distill."""

from pathlib import Path

import datasets


def load(documents: str, **metadata) -> datasets.DatasetDict:
    """The jsonl file `documents` beside this file as the test split (lm-eval also passes the run's metadata)."""
    return datasets.load_dataset("json", data_files={"test": str(Path(__file__).parent / documents)})
