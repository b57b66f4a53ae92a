"""Stop signals where there is no training loop to checkpoint: seqkd's generation notes them and stops at the next safe
point (after the current batch), keeping what it has done; an evaluation, which writes nothing before its end, stops
at once. Either run ends as preempted (exit 75)."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Callable, Iterator

# what a scheduler or an operator sends to stop a job: SIGTERM (Slurm, kill), SIGUSR1/SIGUSR2 (Slurm's and
# submitit's warnings), SIGINT (Ctrl-C; a second Ctrl-C interrupts at once)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)


@contextmanager
def handled_signals(handler: Callable, signals=STOP_SIGNALS) -> Iterator[None]:
    """`handler` handles `signals` inside the block; the previous handlers are back after it. Outside the main thread
    signals cannot be handled: nothing changes there."""
    try:
        previous = {sig: signal.signal(sig, handler) for sig in signals}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


@contextmanager
def noted_signals(signals=STOP_SIGNALS) -> Iterator[Callable[[], signal.Signals | None]]:
    """Inside the block, `signals` are only noted; yields a function returning the first one received (None so far).
    The previous handlers are back after the block. Outside the main thread nothing is noted."""
    received: list[signal.Signals] = []

    def note(signum, frame):
        if received and signum == signal.SIGINT:
            signal.default_int_handler(signum, frame)  # a second Ctrl-C: stop now
        received.append(signal.Signals(signum))

    with handled_signals(note, signals):
        yield lambda: received[0] if received else None
