"""Run directories: a fresh one for every run, never an earlier run's; `resume=<run dir>` reuses one on purpose.

Hydra names run and sweep directories by the second they start, so two runs started in the same second would share
(and overwrite) one. `${unique_dir:<path>}` claims `<path>` with an exclusive mkdir, or `<path>_1`, `<path>_2`, ... when
another run has it. The resolver is cached like Hydra's `${now:}`: Hydra copies the cache into every sweep job's
config and submitit pickles it with the job, so all jobs of a sweep, and a requeued job, get the directory claimed
at launch (a requeued job resumes from its own directory's checkpoints).

One process at a time works in a run directory: `holding(run_dir)` takes an OS advisory lock on `<run dir>/.lock`
(flock: the kernel releases it when the process ends, however it ends, so a killed run leaves no stale lock).
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from omegaconf import OmegaConf

from ..atomic import check_writable
from ..errors import UserError
from .recorded_config import config_subdir

LOCK = ".lock"
# what a run directory holds before the run has done anything: Hydra's record (.hydra/), its log (*.log) and the lock
SETUP_FILES = (".hydra", LOCK)


def setup_only(run_dir: Path) -> bool:
    """Whether `run_dir` holds nothing but what is written before a run starts (nothing to resume or inspect)."""
    return all(p.name in SETUP_FILES or p.suffix == ".log" for p in run_dir.iterdir())


@contextmanager
def holding(run_dir: Path) -> Iterator[None]:
    """Hold the lock of `run_dir` inside the block; refused at once (UserError naming the holder's PID) while another
    process holds it. The holder's PID is written into the lock file, for the refusal to name."""
    try:
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise UserError(f"the run directory {run_dir} is not writable ({err.strerror})") from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise UserError(
                f"{run_dir} is in use by another run (PID {holder or 'unknown'}); two runs in one directory "
                "would overwrite each other's checkpoints and metrics: wait for it to end (or stop it), then resume"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def claim_unique_dir(path: str) -> str:
    """Create and return `path`, or the first of `path_1`, `path_2`, ... that no other run has created."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(
            f"cannot create {Path(path).parent} ({err.strerror}); paths.log_dir (HD_LOG_DIR) must be "
            "a writable directory"
        ) from err
    candidate, n = path, 0
    while True:
        try:
            os.mkdir(candidate)  # atomic: exactly one of several concurrent runs creates a given directory
            return candidate
        except FileExistsError:
            n += 1
            candidate = f"{path}_{n}"
        except OSError as err:  # read-only or full file system, a file where a directory should be
            raise UserError(
                f"cannot create the run directory {candidate} ({err.strerror}); paths.log_dir "
                "(HD_LOG_DIR) must be a writable directory"
            ) from err


def run_dir(resume: str | None, fresh: str) -> str:
    """hydra.run.dir: the directory of the run being resumed (it must exist: a typo must not become a new run
    directory), or a new unique one."""
    if resume:
        if not os.path.isdir(resume):
            raise UserError(
                f"resume={resume}: no such run directory; pass the directory of the run to continue, "
                "e.g. outputs/train/runs/<date>_<time>"
            )
        check_writable(Path(resume), f"resume={resume}: the run directory")
        return os.path.abspath(resume)
    return claim_unique_dir(fresh)


def register_resolvers(wrap: Callable[[Callable], Callable] = lambda fn: fn) -> None:
    """${unique_dir:...}, ${run_dir:...} (cached, see above) and ${config_subdir:...} (hydra.output_subdir);
    `wrap` decides how a UserError raised while Hydra resolves them is reported."""
    for name, fn, cached in (
        ("unique_dir", claim_unique_dir, True),
        ("run_dir", run_dir, True),
        ("config_subdir", config_subdir, False),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, wrap(fn), use_cache=cached)


def check_resume_dir(run_dir: Path) -> None:
    """`resume=<dir>` must name a directory an earlier run wrote into (not a typo that Hydra just created)."""
    if not run_dir.is_dir() or setup_only(run_dir):
        raise UserError(
            f"resume={run_dir}: no earlier run there (no stage outputs, checkpoints or metrics); "
            "pass the directory of the run to continue, e.g. outputs/train/runs/<date>_<time>"
        )
