"""Run directories: a fresh one for every run, never an earlier run's; `resume=<run dir>` reuses one on purpose.

Hydra names run and sweep directories by the second they start, so two runs started in the same second would share
(and overwrite) one. `${unique_dir:<path>}` claims `<path>` with an exclusive mkdir, or `<path>_1`, `<path>_2`, ... when
another run has it. The resolver is cached like Hydra's `${now:}`: Hydra copies the cache into every sweep job's
config and submitit pickles it with the job, so all jobs of a sweep, and a requeued job, get the directory claimed
at launch (a requeued job resumes from its own directory's checkpoints).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from omegaconf import OmegaConf

from ..atomic import check_writable
from ..errors import UserError
from .recorded_config import config_subdir

# files Hydra writes into a run directory before the run starts; anything else was left by an earlier run
_HYDRA_OWN = (".hydra",)


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
    earlier = (
        [p for p in run_dir.iterdir() if p.name not in _HYDRA_OWN and p.suffix != ".log"] if run_dir.is_dir() else []
    )
    if not earlier:
        raise UserError(
            f"resume={run_dir}: no earlier run there (no stage outputs, checkpoints or metrics); "
            "pass the directory of the run to continue, e.g. outputs/train/runs/<date>_<time>"
        )
