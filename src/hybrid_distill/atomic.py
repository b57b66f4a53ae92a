"""Writing files and directories so that a crash never leaves half of one: write beside the target, then rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def check_writable(directory: Path, what: str) -> None:
    """Refuse a directory this process cannot write into, before work whose results would go there (a real write:
    permission bits do not tell about read-only mounts, and root ignores them)."""
    from .errors import UserError

    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise UserError(f"{what} {directory} is not writable ({err.strerror or err})") from err


def write_file_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` to a temp file beside `path`, fsync it, then replace `path` with it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def publish_dir(target: Path, write: Callable[[Path], None], replace: bool = False) -> bool:
    """Fill a staging directory beside `target` with `write(staging)`, then rename it to `target`.

    Returns False, keeping the other copy and discarding this one, when another writer published `target` first
    (a directory is not replaced: readers may be using it), unless `replace`: then the old copy is renamed aside
    only once the new one is complete, and deleted after the new one took its name (a crash before that leaves the
    old copy in place). The staging directory never outlives the call.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{target.name}-"))
    try:
        write(staging)
        if replace and target.is_dir():
            old = staging.with_name(f"{staging.name}-old")
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
            return True
        try:
            staging.rename(target)
            return True
        except OSError:
            if target.is_dir():
                return False
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
