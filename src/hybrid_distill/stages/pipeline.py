"""Stage `pipeline`: stages in order (pretrain_teacher -> seqkd -> distill -> dpo), each from the previous
one's output, each its own W&B run in one group.

Every stage runs with the config that `python train.py stage=<name>` plus this run's overrides would give
(composed again through Hydra), plus `stage.overrides.<name>` and the wiring to earlier outputs. Finished
stages are recorded in pipeline_state.json, so rerunning in the same directory (`hydra.run.dir=<run dir>`)
skips them and resumes at the first unfinished stage.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Callable

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ..errors import UserError
from ..runtime import RunContext, write_json_atomic

STATE_FILE = "pipeline_state.json"


def _compose(overrides: list[str]) -> DictConfig:
    if GlobalHydra.instance().is_initialized():
        cfg = compose("train", overrides=overrides)
    else:  # called outside a Hydra app (tests, notebooks)
        from ..cli import config_dir

        with initialize_config_dir(config_dir(), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


def run_overrides(cfg: DictConfig) -> list[str]:
    """This run's command-line overrides, without the stage choice."""
    task = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else list(cfg.get("_overrides", []))
    return [o for o in task if not o.startswith(("stage=", "stage.", "+stage"))]


def wiring(name: str, done: dict[str, dict]) -> list[str]:
    """Overrides that connect a stage to the outputs of the stages before it."""
    if name == "distill" and "seqkd" in done:
        return [f"data.source='{done['seqkd']['seqkd_dataset_dir']}'"]
    if name == "dpo":
        if "distill" not in done:
            raise UserError("pipeline: dpo needs a distill stage before it in stage.order")
        return [f"stage.init_from='{done['distill']['student_dir']}'"]
    return []


def run_pipeline(cfg: DictConfig, run: RunContext, runners: dict[str, Callable]) -> dict:
    order = list(cfg.stage.order)
    unknown = [n for n in order if n not in runners]
    if unknown:
        raise UserError(f"stage.order names unknown stages {unknown}; available: {sorted(runners)}")
    state_path = run.output_dir / STATE_FILE
    done: dict[str, dict] = json.loads(state_path.read_text())["done"] if state_path.exists() else {}
    group = f"pipeline-{run.output_dir.name}"
    base = run_overrides(cfg)
    for name in order:
        if name in done:
            continue
        extra = list(cfg.stage.overrides.get(name, []))
        stage_cfg = _compose([*base, f"stage={name}", *extra, *wiring(name, done)])
        stage_run = replace(run, output_dir=run.output_dir / name, group=group)
        stage_run.output_dir.mkdir(parents=True, exist_ok=True)
        done[name] = runners[name](stage_cfg, stage_run)
        write_json_atomic(state_path, {"order": order, "done": done})
    return {f"{stage}/{key}": value for stage, results in done.items() for key, value in results.items()}
