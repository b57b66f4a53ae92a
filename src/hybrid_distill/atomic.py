"""Writing files and directories so that a crash never leaves half of one: write beside the target, then rename."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator


@contextmanager
def _synced_temp(beside: Path, write: Callable[[Path], None]) -> Iterator[Path]:
    """`write(tmp)` to a temp file beside `beside` and fsync it; the temp file never outlives the block."""
    tmp = beside.with_name(f".{beside.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def write_file_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` to a temp file beside `path`, fsync it, then replace `path` with it."""
    with _synced_temp(path, write) as tmp:
        os.replace(tmp, path)


def write_new_file(names: Iterable[Path], write: Callable[[Path], None]) -> Path:
    """`write(tmp)` once, then give the file the first of `names` that does not exist yet, and return it. Never
    overwrites: os.link fails on an existing name, so two concurrent writers cannot take the same one, and a reader
    never sees half a file."""
    names = iter(names)
    first = next(names)
    with _synced_temp(first, write) as tmp:
        for name in (first, *names):
            try:
                os.link(tmp, name)
                return name
            except FileExistsError:
                continue
    raise FileExistsError(f"every name from {first} on is taken")


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """`payload` as indented JSON at `path` (its directory created), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=2, default=float)))


def publish_dir(target: Path, write: Callable[[Path], None]) -> bool:
    """Fill a staging directory beside `target` with `write(staging)`, then rename it to `target`.

    Returns False, keeping the other copy and discarding this one, when another writer published `target` first
    (a directory is never replaced: readers may be using it). The staging directory never outlives the call.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{target.name}-"))
    try:
        write(staging)
        try:
            staging.rename(target)
            return True
        except OSError:
            if target.is_dir():
                return False
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
