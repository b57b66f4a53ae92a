"""Load chat (UltraChat schema) and preference (UltraFeedback schema) datasets from one of:

- `"builtin"`: the generated tasks of `chat_tasks` (fixed seed per split, so every run and every
  sweep member sees the same rows);
- `"shakespeare_instruct"` (chat only): instructions over Shakespeare passages plus those tasks (`passages`),
  prompts for a real teacher to answer (`stage=seqkd`); validation/test prompts come from held-out plays;
- a local path: a `.jsonl` / `.json` / `.parquet` file, or a `Dataset.save_to_disk` directory;
- a `datasets.Dataset` / `DatasetDict` object (e.g. teacher pseudo-labels built in memory);
- `"hf://<org>/<name>"`: a hub dataset for `datasets.load_dataset` (e.g. "hf://HuggingFaceH4/ultrachat_200k"
  with split "train_sft"); hub sources need network access or a populated HF cache. Nothing else is sent to the
  hub: a local path that does not exist is an error, not a hub id (a typo would fetch someone else's dataset).

Rows are validated and normalised with `datasets.map`; a bad row raises `DataRowError`
naming the source, row index and field.
"""

import json
import os
from collections.abc import Callable
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

from hybrid_distill.data import chat_tasks, passages
from hybrid_distill.paths import HUB_PREFIX, hub_id
from hybrid_distill.data.schemas import normalise_chat_row, normalise_preference_row, require_columns

Source = str | os.PathLike | Dataset | DatasetDict
BUILTIN = "builtin"
BUILTIN_ROWS = {"train": 4000, "validation": 200, "test": 200}
INSTRUCT = passages.SOURCE_NAME
FILE_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
VALIDATION_CARVE_SEED = 0  # fixed: the carved validation rows never depend on the run's seed


class SplitNotFoundError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def _describe(source: Source) -> str:
    return f"in-memory {type(source).__name__}" if isinstance(source, (Dataset, DatasetDict)) else str(source)


def _pick_split(splits: DatasetDict, split: str, source: Source) -> Dataset:
    if split not in splits:
        raise SplitNotFoundError(f"{_describe(source)} has no split {split!r} (splits: {list(splits)})")
    return splits[split]


def _load_raw(source: Source, split: str, cache_dir: str | None) -> Dataset:
    """Rows of `split` from a non-builtin source; single files and single datasets are 'train'."""
    if isinstance(source, DatasetDict):
        return _pick_split(source, split, source)
    if isinstance(source, Dataset):
        return _pick_split(DatasetDict(train=source), split, source)
    hub = hub_id(str(source))
    if hub is not None:
        return load_dataset(hub, split=split, cache_dir=cache_dir)
    path = Path(source)
    if path.is_dir():
        loaded = load_from_disk(str(path))
        return _pick_split(loaded if isinstance(loaded, DatasetDict) else DatasetDict(train=loaded), split, source)
    if path.suffix in FILE_FORMATS:
        if not path.is_file():
            raise FileNotFoundError(f"data file {path} does not exist")
        if FILE_FORMATS[path.suffix] == "json":
            check_json_file(path)
        files = load_dataset(FILE_FORMATS[path.suffix], data_files={"train": str(path)}, cache_dir=cache_dir)
        return _pick_split(files, split, source)
    raise FileNotFoundError(
        f"{source} does not exist (a local .jsonl/.json/.parquet file or save_to_disk directory); "
        f"a hub dataset is named explicitly as {HUB_PREFIX}<org>/<name>, the generated ones as "
        f"{BUILTIN!r} or {INSTRUCT!r}"
    )


def check_json_file(path: Path) -> None:
    """A JSON Lines file (or one JSON array) of objects, in UTF-8, with at least one row: otherwise one ValueError
    naming the file and the row (datasets' own errors name neither)."""
    rows = 0
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
        f.seek(0)
        if head.startswith(b"["):  # one JSON array (a .json file): its elements are the rows
            text = _utf8(f.read(), path, 1)
            try:
                rows = len(json.loads(text))
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"row {err.lineno} of {path} is not valid JSON ({err.msg} at column {err.colno})"
                ) from None
        for row, raw in [] if head.startswith(b"[") else enumerate(f, 1):
            line = _utf8(raw, path, row).rstrip("\r\n")
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"row {row} of {path} is not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(value, dict):
                raise ValueError(f"row {row} of {path} is not a JSON object")
            rows += 1
    if rows == 0:
        raise ValueError(f"{path} is empty: no rows")


def _utf8(raw: bytes, path: Path, first_row: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        row = first_row + raw.count(b"\n", 0, err.start)
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1)
        raise ValueError(f"row {row} of {path} is not UTF-8 text (byte {column}: 0x{raw[err.start]:02x})") from None


def _head(ds: Dataset, num_rows: int | None) -> Dataset:
    return ds if num_rows is None else ds.select(range(min(num_rows, len(ds))))


def _load(
    source: Source,
    split: str,
    num_rows: int | None,
    cache_dir: str | None,
    builtins: dict[str, tuple[Callable[[int, str], Dataset], dict[str, int]]],
    required: tuple[str, ...],
    normalise: Callable[[dict, int, str], dict],
) -> Dataset:
    if isinstance(source, str) and source in builtins:
        generate, rows = builtins[source]
        if split not in rows:
            raise SplitNotFoundError(f"{source} data has no split {split!r} (splits: {list(rows)})")
        return generate(num_rows or rows[split], f"{split}:0")
    ds = _head(_load_raw(source, split, cache_dir), num_rows)
    require_columns(ds.column_names, required, _describe(source))
    return ds.map(normalise, with_indices=True, fn_kwargs={"source": _describe(source)}, desc="validate rows")


def load_chat_dataset(
    source: Source = BUILTIN, split: str = "train", num_rows: int | None = None, cache_dir: str | None = None
) -> Dataset:
    """Validated chat rows with a `messages` column (other columns kept); the first `num_rows`
    rows only if given (for "builtin": the number of rows generated)."""
    builtins = {
        BUILTIN: (chat_tasks.chat_dataset, BUILTIN_ROWS),
        INSTRUCT: (passages.instruction_dataset, passages.ROWS),
    }
    return _load(source, split, num_rows, cache_dir, builtins, ("messages",), normalise_chat_row)


def load_preference_dataset(
    source: Source = BUILTIN, split: str = "train", num_rows: int | None = None, cache_dir: str | None = None
) -> Dataset:
    """Validated preference rows normalised to `prompt` (str), `chosen` and `rejected`
    (conversations ending in the two assistant answers); other columns kept."""
    builtins = {BUILTIN: (chat_tasks.preference_dataset, BUILTIN_ROWS)}
    return _load(source, split, num_rows, cache_dir, builtins, ("chosen", "rejected"), normalise_preference_row)


def load_train_val(
    load: Callable[..., Dataset],
    source: Source,
    train_split: str = "train",
    val_split: str = "validation",
    val_fraction: float = 0.05,
    num_train_rows: int | None = None,
    num_val_rows: int | None = None,
    cache_dir: str | None = None,
) -> tuple[Dataset, Dataset]:
    """(train, validation) via `load` (`load_chat_dataset` or `load_preference_dataset`); when the
    source has no `val_split` (a single file, say), `val_fraction` of train is held out with a
    fixed seed."""
    train = load(source, train_split, num_train_rows, cache_dir)
    try:
        return train, load(source, val_split, num_val_rows, cache_dir)
    except SplitNotFoundError:
        parts = train.train_test_split(test_size=val_fraction, seed=VALIDATION_CARVE_SEED)
        return parts["train"], _head(parts["test"], num_val_rows)
