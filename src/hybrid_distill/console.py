"""What a run prints for a person: the shared rich console, one-line messages and the end-of-run summary table."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()


def say(label: str, message: str) -> None:
    """One line whatever the terminal width; `message` is text, not rich markup (it may hold [brackets])."""
    console.print(f"{label} {escape(message)}", highlight=False, soft_wrap=True)


def print_summary(results: dict, run_dir: Path, seconds: float) -> None:
    """The run's metrics as a table, then its directory and every `*_dir` it produced."""
    table = Table(title=f"hybrid_distill summary ({seconds:.0f} s)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in results.items():
        if key.endswith("_dir") or value is None:
            continue
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    console.print(f"run directory: {run_dir}")
    for key, value in results.items():
        if key.endswith("_dir") and value:
            console.print(f"{key.replace('_', ' ')}: {value}")
