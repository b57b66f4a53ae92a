"""A CSV logger that keeps a resumed stage's earlier rows: Lightning's deletes an existing metrics.csv when it starts.
Rows the interrupted run logged after the checkpoint it resumes from are dropped when training resumes (the resumed
run logs those steps again), so every step appears once."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from ..atomic import write_file_atomic


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # instead of deleting metrics.csv, continue it: its header's columns stay, new columns are added
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class AppendingCSVLogger(CSVLogger):
    """CSVLogger whose metrics.csv survives a resume: rows of the resumed run are appended to the interrupted run's."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def drop_rows_from(self, step: int) -> None:
        """Keep only the rows of metrics.csv logged before `step` (and this process's rows not yet written)."""
        self.experiment.save()
        path = Path(self.experiment.metrics_file_path)
        if not path.is_file():
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames or [], list(reader)
        kept = [row for row in rows if not row.get("step") or int(float(row["step"])) < step]
        if len(kept) == len(rows):
            return

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(kept)

        write_file_atomic(path, write)


class ResumedCSVRows(L.Callback):
    """When training resumes from a checkpoint, drops the rows of metrics.csv from the checkpoint's step on: the
    interrupted run logged them after that checkpoint (before it was killed), and the resumed run logs them again."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step  # restored: the first step the resumed run trains and logs
        if step > 0:
            for logger in trainer.loggers:
                if isinstance(logger, AppendingCSVLogger):
                    logger.drop_rows_from(step)
