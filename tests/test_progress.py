"""Progress when stdout is a file (nohup, submitit, Slurm): one plain line now and then, not a silent live bar."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import RichProgressBar

from helpers import compose_config
from hybrid_distill.console import progress
from hybrid_distill.lit.progress import LineProgress, progress_bar


class _Toy(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(16, 1)

    def training_step(self, batch, batch_idx):
        return self.emb(batch["input_ids"]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_configured_progress_bar_prints_lines_when_stdout_is_not_a_terminal(tmp_path, capsys):
    cfg = compose_config(tmp_path, shrink=False)  # the tests' shrunk preset turns the bar off
    bar = instantiate(cfg.callbacks.progress_bar, every_s=0)  # pytest captures stdout: not a terminal
    assert isinstance(bar, LineProgress)
    assert isinstance(progress_bar("rich"), RichProgressBar)
    data = torch.utils.data.DataLoader([{"input_ids": torch.randint(0, 16, (8,))} for _ in range(10)], batch_size=2)
    trainer = L.Trainer(
        max_steps=5,
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        default_root_dir=str(tmp_path / "distill"),
        enable_model_summary=False,
    )
    trainer.fit(_Toy(), train_dataloaders=data)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("distill step")]
    assert [line.split(" | ")[0] for line in lines] == [f"distill step {i}/5" for i in range(1, 6)]
    fields = lines[-1].split(" | ")
    assert fields[1].startswith("loss ") and float(fields[1].split()[1]) >= 0
    assert fields[2].startswith("tokens/s ") and float(fields[2].split()[1].replace(",", "")) > 0
    assert fields[3] == "ETA 0:00:00"


def test_loops_outside_lightning_print_progress_lines_in_a_log_file(capsys):
    assert list(progress(range(3), "teacher generating", every_s=3600)) == [0, 1, 2]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("teacher generating: 1/3, ETA") and out[-1] == "teacher generating: 3/3, ETA 0 s"


def test_the_summary_table_keeps_long_metric_names_whole_in_a_log_file(capsys):
    from hybrid_distill.console import print_summary

    keys = [f"throughput/decode_speedup_vs_teacher/L128/B{b}" for b in (1, 4)]
    print_summary(
        {keys[0]: 1.5, keys[1]: 2.5, "quality/data": "chat from /a/long/path/seqkd_dataset, validation split"},
        Path("/run"),
        1.0,
    )
    out = capsys.readouterr().out
    assert all(key in out for key in keys) and "chat from /a/long/path/seqkd_dataset, validation split" in out


def test_known_harmless_noise_is_silenced_and_real_warnings_still_show(caplog):
    import logging
    import warnings

    from hybrid_distill.lit.progress import StepsRichProgressBar
    from hybrid_distill.noise import quiet_known_noise

    with warnings.catch_warnings(record=True) as seen:
        quiet_known_noise()
        warnings.warn(
            "Found 58 module(s) in eval mode at the start of training. This may lead to ...", UserWarning, stacklevel=1
        )
        warnings.warn(
            "When using the `ThroughputMonitor`, you need to define a `flops_per_batch` attribute",
            UserWarning,
            stacklevel=1,
        )
        warnings.warn("something real", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something real"]
    with caplog.at_level(logging.INFO):
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False, used: False")
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("resuming from last.ckpt")
    assert [r.getMessage() for r in caplog.records] == ["resuming from last.ckpt"]

    bar = StepsRichProgressBar()
    trainer = L.Trainer(
        max_steps=7, default_root_dir="/runs/x/distill", logger=False, enable_checkpointing=False, callbacks=[bar]
    )
    bar.setup(trainer, None, "fit")
    assert bar._get_train_description(0) == "distill epoch 0 (max 7 steps)"  # not Lightning's "Epoch 0/-2"
