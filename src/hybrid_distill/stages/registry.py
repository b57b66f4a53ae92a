"""Every stage `stage.name` can choose, by name: adding a stage means one module in stages/, its conf/stage/ file
and one entry here."""

from __future__ import annotations

from typing import Callable

from .corpus import run_corpus
from .distill import run_distill
from .dpo import run_dpo
from .eval import run_eval
from .pipeline import run_pipeline
from .scratch import run_scratch
from .seqkd import run_seqkd
from .sft_teacher import run_sft_teacher
from .teacher import run_pretrain_teacher


def stage_runners() -> dict[str, Callable]:
    """name -> runner(cfg, run) returning the stage's summary metrics; `pipeline` runs the others."""
    runners = {
        "pretrain_teacher": run_pretrain_teacher,
        "seqkd": run_seqkd,
        "distill": run_distill,
        "dpo": run_dpo,
        "eval": run_eval,
        "sft_teacher": run_sft_teacher,
        "scratch": run_scratch,
        "corpus": run_corpus,
    }
    return {**runners, "pipeline": lambda cfg, run: run_pipeline(cfg, run, runners)}
