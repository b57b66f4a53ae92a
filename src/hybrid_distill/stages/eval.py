"""Stage `eval` and `python eval.py`: load what `ckpt` names (the student, and its teacher: the training run's own,
pretrained again if it is not cached, or a HF directory) and run the evaluation suite of `eval/` on it. Nothing a
run directory's config names is instantiated: the student comes from its config.json (or the run's student settings
through this package's builders), data from `data.build.DATAMODULES`, a teacher's pretraining from this package's
own trainer and callbacks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from ..atomic import check_writable
from ..console import print_summary
from ..eval.loading import Checkpoint, load_student, resolve_checkpoint, saved_hydra
from ..eval.suite import evaluate, print_recall
from ..models.teacher import load_teacher
from ..paths import config_dir
from ..runtime import RunContext, job_config, name_and_group, swept_settings
from .student import student_from_config
from .teacher import obtain_teacher


def load_teacher_for(ck: Checkpoint, spec: str | None, ctx: RunContext):
    """(teacher, tokenizer) or (None, None). spec: "auto" = the run's teacher, None = none, else a HF directory."""
    if spec is None:
        return None, None
    if spec != "auto":
        return load_teacher(str(spec), key="suite.teacher")
    if ck.run_cfg is None or ck.run_cfg.stage.name == "scratch":  # a model trained from scratch has no teacher
        return None, None
    return obtain_teacher(with_own_trainer(ck.run_cfg), ctx)


def with_own_trainer(run_cfg: DictConfig) -> DictConfig:
    """The run's config with this package's CPU trainer and default callbacks in place of the run's: pretraining its
    tiny teacher (where it is not cached) builds them, and a run directory may come from someone else, whose config
    must not choose the classes built here."""
    cfg = run_cfg.copy()
    with open_dict(cfg):
        for group, option in (("trainer", "cpu"), ("callbacks", "default")):
            cfg[group] = OmegaConf.load(Path(config_dir()) / group / f"{option}.yaml")
    return cfg


def evaluate_checkpoint(
    ck: Checkpoint,
    suite: DictConfig,
    logger_cfg: DictConfig,
    ctx: RunContext,
    seed: int,
    cache_dir: str,
    config: dict[str, Any],
) -> dict:
    """Load the student of `ck` and the teacher `suite.teacher` names, then run the suite on them."""
    teacher, teacher_tokenizer = load_teacher_for(ck, suite.teacher, ctx)
    student, tokenizer = load_student(ck, teacher, teacher_tokenizer, suite.scan_backend, build=student_from_config)
    return evaluate(ck, student, teacher, tokenizer, suite, logger_cfg, ctx, seed, cache_dir, config)


def run_eval(cfg: DictConfig, run: RunContext) -> dict:
    """Stage `eval` (for stage=pipeline): the suite's settings live under cfg.stage, the student at cfg.stage.ckpt.
    Its W&B config is the step's own config (the pipeline's settings) plus the run's command-line overrides."""
    swept = swept_settings(list(HydraConfig.get().overrides.task)) if HydraConfig.initialized() else {}
    return evaluate_checkpoint(
        resolve_checkpoint(cfg.stage.ckpt),
        cfg.stage,
        cfg.logger,
        run,
        int(cfg.seed),
        str(cfg.paths.cache_dir),
        {**job_config(cfg), "swept": swept},
    )


def run_identity(ck: Checkpoint, output_dir: Path) -> RunContext:
    """The eval's W&B name and group: those of the evaluated training run (from its saved .hydra/hydra.yaml, as the
    run derived them), so an evaluation sits beside its training runs. The saved hydra node is read beside the run's
    config, as Hydra held it in training, so that its interpolations of the job's keys resolve."""
    saved = saved_hydra(ck.run_dir) if ck.run_dir else None
    if saved is None:
        return RunContext(output_dir, "default", "eval")
    return RunContext(output_dir, *name_and_group(OmegaConf.merge(ck.run_cfg, {"hydra": saved}).hydra, ck.run_cfg))


def training_settings(ck: Checkpoint) -> dict[str, Any]:
    """The evaluated training run's config (under the same keys as its own W&B runs, so that a dashboard groups
    evaluations by mamba_ratio, loss, ...) and its command-line overrides under `swept`; {} for a bare student."""
    if ck.run_dir is None or ck.run_cfg is None:
        return {}
    try:
        settings = OmegaConf.to_container(ck.run_cfg, resolve=True)
    except Exception:  # an interpolation of the training machine that does not resolve here: keep it as written
        settings = OmegaConf.to_container(ck.run_cfg, resolve=False)
    overrides = ck.run_dir / ".hydra" / "overrides.yaml"
    swept = swept_settings([str(o) for o in OmegaConf.load(overrides)]) if overrides.is_file() else {}
    return {**settings, "swept": swept}


def evaluate_from_config(cfg: DictConfig) -> dict:
    """What `python eval.py` does with its composed config (conf/eval.yaml). The W&B run's config holds the
    training run's settings at the top and this evaluation's config under `eval`."""
    start = time.perf_counter()
    ck = resolve_checkpoint(cfg.ckpt)
    output_dir = Path(HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # the results go into the evaluated run's directory: refuse a read-only one before the suite runs, not after
    check_writable(ck.run_dir or output_dir, "the results directory (the evaluated run's)")
    config = {**training_settings(ck), "eval": job_config(cfg)}
    summary = evaluate_checkpoint(
        ck, cfg.suite, cfg.logger, run_identity(ck, output_dir), int(cfg.seed), str(cfg.paths.cache_dir), config
    )
    print_recall(summary)
    shown = {k: v for k, v in summary.items() if not k.startswith("recall/") and k != "eval_json"}
    print_summary(shown, Path(summary["eval_json"]), time.perf_counter() - start, where="results")
    return summary
