"""Exceptions that the command line reports as one clear sentence (and an exit status) instead of a traceback."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class UserError(Exception):
    """A config value, file or data row that is wrong; the message names it and says what to do."""


class TrainingDiverged(Exception):
    """A non-finite loss or gradient stopped training (the message names the step, the value and the last good
    checkpoint), or an evaluation found the weights diverged (its metrics are NaN or inf)."""


class Preempted(Exception):
    """A signal (SIGTERM, SIGUSR1, SIGUSR2) stopped training after its checkpoint was saved; the run resumes from it."""


# the exit statuses of the above (besides 0, finished, and Hydra's 1, config composition error), for scripts and
# schedulers; every command line (train.py, eval.py, python -m hybrid_distill.export) uses these
EXIT_BAD_INPUT = 2  # a UserError: a config value, file or data row is wrong: fix it and rerun
EXIT_DIVERGED = 3  # a non-finite loss or gradient stopped training (last good checkpoint kept), or NaN/inf eval metrics
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: a signal stopped it after saving last.ckpt: resume=<run dir> (eval.py: run again)


@contextmanager
def reported_as_user_error(what: str) -> Iterator[None]:
    """Missing files, bad values and missing keys raised while reading user input become one UserError naming `what`
    (the config key the input came from)."""
    try:
        yield
    except (OSError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise UserError(f"{what}: {message}") from err
