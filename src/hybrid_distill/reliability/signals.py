"""Noting stop signals where there is no training loop to checkpoint (seqkd's generation): the work stops at the
next safe point (after the current batch), keeps what it has done, and the run ends as preempted (exit 75)."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Callable, Iterator

# what a scheduler or an operator sends to stop a job: SIGTERM (Slurm, kill), SIGUSR1/SIGUSR2 (Slurm's and
# submitit's warnings), SIGINT (Ctrl-C; a second Ctrl-C interrupts at once)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)


@contextmanager
def noted_signals(signals=STOP_SIGNALS) -> Iterator[Callable[[], signal.Signals | None]]:
    """Inside the block, `signals` are only noted; yields a function returning the first one received (None so far).
    The previous handlers are back after the block. Outside the main thread signals cannot be handled: nothing is
    noted there."""
    received: list[signal.Signals] = []

    def note(signum, frame):
        if received and signum == signal.SIGINT:
            signal.default_int_handler(signum, frame)  # a second Ctrl-C: stop now
        received.append(signal.Signals(signum))

    try:
        previous = {sig: signal.signal(sig, note) for sig in signals}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield lambda: received[0] if received else None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
