"""What a run prints for a person: the shared rich console, one-line messages and the end-of-run summary table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import track
from rich.table import Table

console = Console()
T = TypeVar("T")


def progress(items: Iterable[T], description: str, total: int | None = None, every_s: float = 30.0) -> Iterator[T]:
    """Iterate `items` with progress: Rich's live bar on a terminal; when stdout is a file (nohup, Slurm) a live
    bar prints nothing until the loop ends, so one line `<description>: i/total, ETA` at most every `every_s`."""
    total = total if total is not None else len(items)  # type: ignore[arg-type]
    if console.is_terminal:
        yield from track(items, description=description, total=total, console=console)
        return
    start = last = time.perf_counter()
    for done, item in enumerate(items):
        yield item
        now = time.perf_counter()
        if done + 1 == total or now - last >= every_s or done == 0:
            eta = (now - start) / (done + 1) * (total - done - 1)
            console.print(f"{description}: {done + 1}/{total}, ETA {eta:.0f} s", highlight=False, soft_wrap=True)
            last = now


def say(label: str, message: str) -> None:
    """One line whatever the terminal width; `message` is text, not rich markup (it may hold [brackets])."""
    console.print(f"{label} {escape(message)}", highlight=False, soft_wrap=True)


def print_summary(results: dict, run_dir: Path, seconds: float, where: str = "run directory") -> None:
    """The run's metrics as a table, then its directory (`where: run_dir`) and every `*_dir` it produced."""
    rows = [
        (key, f"{value:.4g}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value))
        for key, value in results.items()
        if not key.endswith("_dir") and value is not None
    ]
    table = Table(title=f"hybrid_distill summary ({seconds:.0f} s)")
    # names are never cut: folded onto a second line on a narrow terminal, in full in a log file
    table.add_column("metric", overflow="fold")
    table.add_column("value", justify="right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    needed = max((len(k) for k, _ in rows), default=0) + max((len(v) for _, v in rows), default=0) + 7  # + borders
    wide = console if console.is_terminal else Console(width=max(console.width, needed))  # a log file has no edge
    wide.print(table)
    console.print(f"{where}: {run_dir}", soft_wrap=True)  # paths whole, for copy and paste
    for key, value in results.items():
        if key.endswith("_dir") and value:
            console.print(f"{key.replace('_', ' ')}: {value}", soft_wrap=True)
