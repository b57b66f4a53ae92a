"""Messages a run does not print: warnings and notices known to be harmless here, each with the reason. Anything
else (a real warning) still shows. Called once when a run starts (cli.run, cli.evaluate)."""

from __future__ import annotations

import logging
import sys
import warnings

# (message regex, why it is harmless here)
HARMLESS_WARNINGS = (
    (r".*isinstance\(treespec, LeafSpec\)` is deprecated", "Lightning's own call into torch's pytree API"),
    (
        r"When using the `ThroughputMonitor`, you need to define a `flops_per_batch`",
        "we log tokens/s (train/device/items_per_sec), not FLOPs",
    ),
    (
        r"Found \d+ module\(s\) in eval mode at the start of training",
        "the frozen teacher / DPO reference stays in eval mode on purpose (lit/base.py)",
    ),
    (
        r"The '\w+_dataloader' does not have many workers",
        "the embedded data is tokenised and cached up front; loader workers would not speed it up",
    ),
)
# Lightning's notices at every Trainer start: which accelerators exist, and advertisements
# (and "fit stopped: max_steps reached", which is how every stage ends, printed twice under Hydra's logging)
HARMLESS_NOTICES = (
    "GPU available:",
    "TPU available:",
    "HPU available:",
    "💡 Tip:",
    "`Trainer.fit` stopped: `max_steps=",
)
LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(HARMLESS_NOTICES)


def quiet_known_noise() -> None:
    """Silence the known-harmless warnings and notices; in a log file (stdout not a terminal) also the per-item
    progress bars of datasets.map and transformers' weight loading, which print a line per refresh there."""
    for pattern, _why in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotices) for f in logger.filters):
            logger.addFilter(_DropNotices())
    if not sys.stdout.isatty():
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
