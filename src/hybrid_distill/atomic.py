"""Writing files and directories so that a crash never leaves half of one: write beside the target, fsync, rename,
fsync the directory (so the rename itself survives a power cut). Files and directories get the usual permissions
(umask), not the private ones of tempfile. Temp names carry the writer's pid, so that one left by a killed process is
recognised and removed when a run starts (`remove_stale_temps`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .errors import UserError


def check_writable(directory: Path, what: str) -> None:
    """Refuse a directory this process cannot write into, before work whose results would go there (a real write:
    permission bits do not tell about read-only mounts, and root ignores them)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise UserError(f"{what} {directory} is not writable ({err.strerror or err})") from err


# `.<name>.tmp-<pid>` (files) and `.tmp-<name>-<pid>-<random>` (staging directories, and `...-old`)
_TEMP = re.compile(r"\..+\.tmp-(\d+)|\.tmp-.+-(\d+)-[^-]+(-old)?")


def umask() -> int:
    """The process's umask, read without changing it (Linux), else by setting it back at once."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def usual_mode(path: Path) -> None:
    """The permissions `open()` / `mkdir()` would have given (0666 / 0777 less the umask), where tempfile gave 0600."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask())


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temps(directory: Path) -> list[Path]:
    """Remove the temp files and staging directories in `directory` whose writing process is gone (killed mid-write);
    returns what was removed. A temp of a live process (another run writing into a shared cache) is left alone."""
    removed = []
    for path in directory.iterdir() if directory.is_dir() else []:
        match = _TEMP.fullmatch(path.name)
        if match and not _alive(int(match.group(1) or match.group(2))):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextmanager
def _synced_temp(beside: Path, write: Callable[[Path], None]) -> Iterator[Path]:
    """`write(tmp)` to a temp file beside `beside` (usual permissions) and fsync it; the temp file never outlives the
    block."""
    tmp = beside.with_name(f".{beside.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        usual_mode(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def write_file_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` to a temp file beside `path`, fsync it, then replace `path` with it."""
    with _synced_temp(path, write) as tmp:
        os.replace(tmp, path)
        fsync_dir(path.parent)


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
                fsync_dir(name.parent)
                return name
            except FileExistsError:
                continue
    raise FileExistsError(f"every name from {first} on is taken")


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """`payload` as indented JSON at `path` (its directory created), atomically; a read-only or full file system is
    one UserError (the earlier file, if any, is kept)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomic(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=2, default=float)))
    except OSError as err:
        raise UserError(f"{path} could not be written ({err.strerror or err})") from err


def publish_dir(target: Path, write: Callable[[Path], None], replace: bool = False) -> bool:
    """Fill a staging directory beside `target` with `write(staging)`, then rename it to `target`.

    Returns False, keeping the other copy and discarding this one, when another writer published `target` first
    (a directory is not replaced: readers may be using it), unless `replace`: then the old copy is renamed aside
    only once the new one is complete, and deleted after the new one took its name (a crash before that leaves the
    old copy in place). The staging directory never outlives the call.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{target.name}-{os.getpid()}-"))
    try:
        usual_mode(staging)
        write(staging)
        if replace and target.is_dir():
            old = staging.with_name(f"{staging.name}-old")
            target.rename(old)
            staging.rename(target)
            fsync_dir(target.parent)
            shutil.rmtree(old, ignore_errors=True)
            return True
        try:
            staging.rename(target)
            fsync_dir(target.parent)
            return True
        except OSError:
            if target.is_dir():
                return False
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


CHECKSUMS = "checksums.json"


def _digest(path: Path) -> dict[str, Any]:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return {"size": path.stat().st_size, "sha256": sha.hexdigest()}


def record_checksums(directory: Path) -> None:
    """Write `directory/checksums.json`: the size and sha256 of each file in it (e.g. a staging directory about to be
    published, so that the record and the files appear together); `checksum_problem` checks them before use."""
    record = {p.name: _digest(p) for p in sorted(directory.iterdir()) if p.is_file() and p.name != CHECKSUMS}
    write_file_atomic(directory / CHECKSUMS, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))


def checksum_problem(directory: Path) -> str | None:
    """What differs from `directory/checksums.json` (a file missing, truncated, changed; no record at all), or None
    when every recorded file is as it was written."""
    try:
        record = json.loads((directory / CHECKSUMS).read_text())
    except (OSError, ValueError):
        return f"no readable {CHECKSUMS} (size and sha256 of its files)"
    for name, expected in record.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        found = _digest(path)
        if found["size"] != expected["size"]:
            return f"{name} has {found['size']:,} bytes, {expected['size']:,} when it was written"
        if found["sha256"] != expected["sha256"]:
            return f"{name} has another sha256 than when it was written"
    return None
