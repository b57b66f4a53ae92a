"""What every stage needs around its LightningModule: who the run is (`identity`), its loggers (`loggers`), and its
Trainer with callbacks and the checkpoint it resumes from (`trainer`)."""

from .identity import RunContext, is_multirun, job_config, name_and_group, run_context, swept_settings
from .loggers import build_logger, finish_logger, run_tags, save_code, wandb_mode
from .trainer import StageTrainer, build_callbacks, build_trainer, stage_output_dir

__all__ = [
    "RunContext",
    "StageTrainer",
    "build_callbacks",
    "build_logger",
    "build_trainer",
    "is_multirun",
    "run_tags",
    "save_code",
    "swept_settings",
    "finish_logger",
    "job_config",
    "name_and_group",
    "run_context",
    "stage_output_dir",
    "wandb_mode",
]
