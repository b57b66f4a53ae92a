"""Messages a run does not print: warnings and notices known to be harmless here, each with the reason, and no line
twice. Anything else (a real warning) still shows. Called once when a run starts (cli.run, cli.evaluate); Hydra's own
warnings are silenced when the command line is imported (cli), since Hydra warns while it composes the config."""

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
        r"The dirpath has changed from .* therefore `best_model_score`",
        "a copied or moved run directory: its checkpoints keep their names (no version counter) and a resume takes "
        "the newest by step (reliability/checkpoints.py), so the paths its checkpoints recorded are not needed",
    ),
    (
        r"The '\w+_dataloader' does not have many workers",
        "the embedded data is tokenised and cached up front; loader workers would not speed it up",
    ),
)
# Hydra's, while it composes the config of a launch
HYDRA_WARNINGS = (
    (
        r"\s*'hydra/launcher/submitit_(local|slurm)' is validated against ConfigStore schema with the same name",
        "conf/hydra/launcher/submitit_*.yaml extend the submitit plugin's schema of the same name on purpose, so that "
        "the options keep the plugin's names; Hydra 1.3 merges them as before (the warning printed 3 times a sweep)",
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


def quiet_hydra_noise() -> None:
    """Silence HYDRA_WARNINGS (cli calls it at import, before Hydra composes anything)."""
    for pattern, _why in HYDRA_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=UserWarning)


def lightning_logs_once() -> None:
    """The `lightning` package gives its logger a console handler of its own, and that logger also passes its lines
    on to the root logger's handlers (Hydra's console and the run's log file): every Lightning INFO line (`resuming
    from ...`, fast_dev_run's notice) showed twice. Where the root logger has handlers, Lightning's own goes."""
    if not logging.getLogger().handlers:
        return
    lightning_logger = logging.getLogger("lightning")
    for handler in [h for h in lightning_logger.handlers if type(h) is logging.StreamHandler]:
        lightning_logger.removeHandler(handler)


def quiet_known_noise() -> None:
    """Silence the known-harmless warnings and notices, print Lightning's lines once; in a log file (stdout not a
    terminal) also the per-item progress bars of datasets.map and transformers' weight loading, which print a line
    per refresh there."""
    for pattern, _why in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotices) for f in logger.filters):
            logger.addFilter(_DropNotices())
    lightning_logs_once()
    if not sys.stdout.isatty():
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
