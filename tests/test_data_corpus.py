"""The embedded Shakespeare corpus: real English text of the expected size, markup stripped,
split by play deterministically and disjointly."""

from hybrid_distill.data.corpus import markdown_to_text, play_paths, shakespeare_documents, shakespeare_text


def test_corpus_is_plain_english_text_of_expected_size():
    text = shakespeare_text()
    assert 4_500_000 < len(text) < 5_500_000
    assert "To be, or not to be" in text
    assert "HAMLET:\n" in text  # speaker lines kept as NAME:
    for markup in ("**", "##", "_", "\\"):
        assert markup not in text
    words = text.split()
    assert sum(w.lower().strip(",.;:!?'") in {"the", "and", "of", "to"} for w in words) / len(words) > 0.05


def test_markdown_to_text_strips_markup():
    md = "# Play\n\n## ACT I\n\n_Enter GHOST_\n\n**HORATIO**  \nStay! speak,  \nspeak!\n\n\n\n__\\[Aside]_  \n"
    assert markdown_to_text(md) == "Play\n\nACT I\n\nEnter GHOST\n\nHORATIO:\nStay! speak,\nspeak!\n\n[Aside]\n"


def test_split_is_deterministic_disjoint_and_covers_every_play():
    first, second = shakespeare_documents(num_validation_plays=3), shakespeare_documents(num_validation_plays=3)
    train, val = list(first["train"]["title"]), list(first["validation"]["title"])
    assert (train, val) == (list(second["train"]["title"]), list(second["validation"]["title"]))
    assert len(val) == 3 and not set(train) & set(val)
    assert sorted(train + val) == sorted(p.stem for p in play_paths()) and len(train + val) == 38
    assert val == [p.stem for p in play_paths()][-3:]
    assert all(len(t) > 50_000 for t in first["validation"]["text"])
