"""Loaders: builtin data, UltraChat / UltraFeedback schemas from jsonl, parquet and save_to_disk
directories; one clear error naming source, row and field for bad rows."""

import json
import re
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from hybrid_distill.data.loaders import SplitNotFoundError, load_chat_dataset, load_preference_dataset, load_train_val
from hybrid_distill.data.schemas import DataRowError, prompt_turns, with_responses

FIXTURES = Path(__file__).parent / "fixtures"
ULTRACHAT = FIXTURES / "ultrachat_sample.jsonl"
ULTRAFEEDBACK = FIXTURES / "ultrafeedback_sample.jsonl"
PREFERENCE_STRINGS = FIXTURES / "preference_strings_sample.jsonl"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(params=["jsonl", "parquet", "save_to_disk"])
def as_source(request, tmp_path):
    """Turn a fixture jsonl file into the source kind under test."""

    def convert(path: Path) -> Path:
        if request.param == "jsonl":
            return path
        ds = Dataset.from_list(read_jsonl(path))
        target = tmp_path / f"{path.stem}.parquet" if request.param == "parquet" else tmp_path / path.stem
        ds.to_parquet(str(target)) if request.param == "parquet" else ds.save_to_disk(str(target))
        return target

    return convert


def test_ultrachat_fixture_loads_from_every_source_kind(as_source):
    ds = load_chat_dataset(as_source(ULTRACHAT))
    assert [row["messages"] for row in ds] == [row["messages"] for row in read_jsonl(ULTRACHAT)]
    assert "prompt_id" in ds.column_names  # other columns kept


@pytest.mark.parametrize("fixture", [ULTRAFEEDBACK, PREFERENCE_STRINGS])
def test_preference_fixtures_normalise_to_shared_prompt_conversations(as_source, fixture):
    ds = load_preference_dataset(as_source(fixture))
    raw = read_jsonl(fixture)
    assert len(ds) == len(raw)
    for row, original in zip(ds, raw):
        assert row["prompt"] == original["prompt"]
        assert row["chosen"][:-1] == row["rejected"][:-1] == [{"role": "user", "content": original["prompt"]}]
        for side in ("chosen", "rejected"):
            expected = original[side] if isinstance(original[side], str) else original[side][-1]["content"]
            assert row[side][-1] == {"role": "assistant", "content": expected}


def test_builtin_sources_and_splits():
    train, val = (
        load_chat_dataset("builtin", "train", num_rows=20),
        load_chat_dataset("builtin", "validation", num_rows=20),
    )
    assert len(train) == 20 and train["messages"] != val["messages"]
    assert load_chat_dataset("builtin", "train", num_rows=20)["messages"] == train["messages"]
    pairs = load_preference_dataset("builtin", num_rows=8)
    assert all(r["chosen"] != r["rejected"] for r in pairs)
    with pytest.raises(SplitNotFoundError, match="builtin data has no split 'dev'"):
        load_chat_dataset("builtin", "dev")


def test_dataset_dict_directory_picks_the_split(tmp_path):
    rows = read_jsonl(ULTRACHAT)
    DatasetDict(train=Dataset.from_list(rows[:3]), test=Dataset.from_list(rows[3:])).save_to_disk(str(tmp_path / "dd"))
    assert [r["messages"] for r in load_chat_dataset(tmp_path / "dd", "test")] == [rows[3]["messages"]]
    with pytest.raises(SplitNotFoundError, match=r"has no split 'validation' \(splits: \['train', 'test'\]\)"):
        load_chat_dataset(tmp_path / "dd", "validation")


def test_single_file_validation_rows_are_carved_deterministically():
    first = load_train_val(load_chat_dataset, ULTRACHAT, val_fraction=0.25)
    second = load_train_val(load_chat_dataset, ULTRACHAT, val_fraction=0.25)
    assert [len(first[0]), len(first[1])] == [3, 1]
    assert first[1]["messages"] == second[1]["messages"]
    assert first[1]["messages"][0] not in first[0]["messages"]


CHAT_OK = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


@pytest.mark.parametrize(
    ("bad_row", "problem"),
    [
        ({"other": 1}, "'messages' is missing"),
        ({"messages": [{"role": "user", "content": "Hi"}]}, "'messages' has no assistant turn"),
        ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]},
         "'messages[1].content' (assistant) is empty"),
        ({"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "x"}]},
         "'messages[1].role' is 'bot'; expected one of system, user, assistant"),
    ],
)  # fmt: skip
def test_bad_chat_row_names_source_row_and_field(tmp_path, bad_row, problem):
    path = write_jsonl(tmp_path / "chat.jsonl", [CHAT_OK, CHAT_OK, bad_row, CHAT_OK])
    with pytest.raises(DataRowError, match=f"^{re.escape(f'row 2 of {path}: {problem}')}"):
        load_chat_dataset(path)


PAIR_OK = {"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}


@pytest.mark.parametrize(
    ("bad_row", "problem"),
    [
        ({"prompt": "Hi", "chosen": "Hello"}, "'rejected' is missing"),
        ({"prompt": "Hi", "chosen": "", "rejected": "x"}, "'chosen' is empty"),
        ({"prompt": "", "chosen": "a", "rejected": "b"}, "'prompt' is missing or empty"),
    ],
)
def test_bad_preference_row_names_source_row_and_field(tmp_path, bad_row, problem):
    path = write_jsonl(tmp_path / "pairs.jsonl", [PAIR_OK, bad_row])
    with pytest.raises(DataRowError, match=f"^{re.escape(f'row 1 of {path}: {problem}')}"):
        load_preference_dataset(path)


def test_conversation_pairs_must_share_their_prompt():
    good = read_jsonl(ULTRAFEEDBACK)[0]
    bad = {**good, "rejected": [{"role": "user", "content": "Another question"}, good["rejected"][1]]}
    with pytest.raises(
        DataRowError, match=re.escape("row 1 of in-memory Dataset: 'rejected' does not start with the same prompt")
    ):
        load_preference_dataset(Dataset.from_list([good, bad]))


def test_missing_column_and_missing_file_are_named(tmp_path):
    path = write_jsonl(tmp_path / "wrong.jsonl", [{"text": "no conversation here"}])
    with pytest.raises(ValueError, match=re.escape(f"{path} has no column 'messages' (columns: ['text'])")):
        load_chat_dataset(path)
    with pytest.raises(FileNotFoundError, match="data file .*missing.jsonl does not exist"):
        load_chat_dataset(tmp_path / "missing.jsonl")


def test_teacher_responses_become_a_chat_source():
    rows = load_chat_dataset("builtin", num_rows=4)
    prompts = [prompt_turns(m) for m in rows["messages"]]
    relabelled = load_chat_dataset(Dataset.from_list(with_responses(prompts, ["a", "b", "c", "d"])))
    assert [m[:-1] for m in relabelled["messages"]] == prompts
    assert [m[-1] for m in relabelled["messages"]] == [{"role": "assistant", "content": c} for c in "abcd"]
    with pytest.raises(ValueError, match="4 prompts but 3 responses"):
        with_responses(prompts, ["a", "b", "c"])


def test_conversation_chosen_must_end_with_the_answer():
    question, answer = {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}
    rows = [{"chosen": [question, answer], "rejected": [question, answer]},
            {"chosen": [question, answer, question], "rejected": [question, answer]}]  # fmt: skip
    with pytest.raises(
        DataRowError, match=re.escape("row 1 of in-memory Dataset: 'chosen' does not end with an assistant turn")
    ):
        load_preference_dataset(Dataset.from_list(rows))
