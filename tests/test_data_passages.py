"""The Shakespeare instruction prompts: splits follow the plays, references are right where they are checkable."""

from hybrid_distill.data.corpus import shakespeare_documents
from hybrid_distill.data.loaders import load_chat_dataset, load_train_val
from hybrid_distill.data.passages import INSTRUCTIONS, instruction_rows, speeches


def test_speeches_keep_speakers_of_either_case():
    text = "ACT I\n\nHAMLET:\nTo be, or not\nto be.\n\nOld Athenian:\nHear me.\n\nExit\n"
    assert speeches(text) == [("Hamlet", "To be, or not to be."), ("Old Athenian", "Hear me.")]


def test_validation_prompts_quote_only_held_out_plays():
    held_out = shakespeare_documents()["validation"]["title"]
    names = [title.replace("-", " ").title() for title in held_out]
    train, val = load_train_val(load_chat_dataset, "shakespeare_instruct", num_train_rows=200, num_val_rows=100)
    passage_prompts = [m[0]["content"] for m, task in zip(val["messages"], val["task"]) if task in INSTRUCTIONS]
    assert passage_prompts and all(any(name in p for name in names) for p in passage_prompts)
    train_prompts = [m[0]["content"] for m, task in zip(train["messages"], train["task"]) if task in INSTRUCTIONS]
    assert not any(name in p for p in train_prompts for name in names)


def test_rows_mix_every_instruction_with_the_chat_tasks_and_are_reproducible():
    rows = instruction_rows(80, "train", seed=3)
    assert rows == instruction_rows(80, "train", seed=3) and rows != instruction_rows(80, "train", seed=4)
    tasks = [r["task"] for r in rows]
    assert set(INSTRUCTIONS) <= set(tasks) and sum(t not in INSTRUCTIONS for t in tasks) == 20
    for row in rows:
        prompt, answer = row["messages"][0]["content"], row["messages"][1]["content"]
        if row["task"] == "who_speaks":  # the named speaker says the quoted words in the passage
            quoted = prompt.split('says "')[1].rsplit('"?', 1)[0]
            assert f"{answer}: {quoted}" in prompt


def test_pairs_from_chat_reject_another_prompts_answer():
    from datasets import Dataset

    from hybrid_distill.data.preferences import pairs_from_chat

    rows = Dataset.from_list(instruction_rows(30, "validation"))
    pairs = pairs_from_chat(rows, seed=1)
    answers = {r["messages"][0]["content"]: r["messages"][1]["content"] for r in rows}
    assert 0 < len(pairs) <= 30
    for pair in pairs:
        prompt = pair["chosen"][0]["content"]
        assert pair["rejected"][0] == pair["chosen"][0] and pair["chosen"][1]["content"] == answers[prompt]
        assert pair["rejected"][1]["content"] != answers[prompt]
        assert pair["rejected"][1]["content"] in answers.values()
