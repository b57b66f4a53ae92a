"""Stage `pipeline`: a list of steps (pretrain_teacher -> seqkd -> distill -> dpo by default; or the stepwise
distillation chain 0.5 -> 0.75 -> 0.875), each from the previous step's output, each its own W&B run in one group.

A step runs with the config that `python train.py stage=<its stage>` plus this run's overrides would give
(composed again through Hydra), plus the step's own overrides and the wiring to earlier outputs:
- distill after seqkd trains on the teacher's answers (data.source);
- distill after distill converts more layers of the earlier student (student.init_from): stepwise replacement;
- dpo starts from, and is referenced to, the latest distilled student (stage.init_from);
- eval evaluates the latest student (DPO's if there is one, else the distilled one).
Finished steps are recorded in pipeline_state.json, so rerunning in the same directory (`resume=<run dir>`)
skips them, and the first unfinished step resumes from its own newest checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Callable

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ..config_checks import check_config
from ..errors import UserError
from ..paths import config_dir
from ..atomic import write_json_atomic
from ..runtime import RunContext

STATE_FILE = "pipeline_state.json"


def _compose(overrides: list[str]) -> DictConfig:
    if GlobalHydra.instance().is_initialized():
        cfg = compose("train", overrides=overrides)
    else:  # called outside a Hydra app (tests, notebooks)
        with initialize_config_dir(config_dir(), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


def run_overrides() -> list[str]:
    """This run's command-line overrides, without the stage choice and its settings."""
    task = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return [o for o in task if not o.lstrip("+~").startswith(("stage=", "stage.", "experiment="))]


def _latest(done: dict[str, dict], kind: str) -> dict | None:
    outputs = [results for results in done.values() if results.get("_stage") == kind]
    return outputs[-1] if outputs else None


def wiring(stage: str, done: dict[str, dict]) -> list[str]:
    """Overrides that connect a step to the outputs of the steps before it."""
    seqkd, distill = _latest(done, "seqkd"), _latest(done, "distill")
    if stage == "distill":
        wires = [f"data.source='{seqkd['seqkd_dataset_dir']}'"] if seqkd else []
        return wires + ([f"student.init_from='{distill['student_dir']}'"] if distill else [])
    if stage == "dpo":
        if distill is None:
            raise UserError("pipeline: a dpo step needs a distill step before it in stage.steps")
        return [f"stage.init_from='{distill['student_dir']}'"]
    if stage == "eval":
        last = _latest(done, "dpo") or distill
        if distill is None:
            raise UserError("pipeline: an eval step needs a distill or dpo step before it in stage.steps")
        # the recall suite measures at multiples of the length the student was distilled at; quality on held-out
        # data of the kind it was distilled on (the seqkd answers' validation split), not the pipeline's text data
        source = distill.get("data_source")
        return [
            f"stage.ckpt='{last['student_dir']}'",
            f"stage.train_length={distill['train_seq_len']}",
            *([f"stage.quality.source='{source}'"] if source else []),
        ]
    return []


def knobs(stage: str, pipeline: DictConfig) -> list[str]:
    """The pipeline's own shortcuts for its steps: stage.max_prompts shortens every seqkd step."""
    if stage == "seqkd" and pipeline.get("max_prompts") is not None:
        return [f"stage.max_prompts={int(pipeline.max_prompts)}"]
    return []


def run_pipeline(cfg: DictConfig, run: RunContext, runners: dict[str, Callable]) -> dict:
    if cfg.ckpt_path is not None or cfg.get("weights_from") is not None:
        raise UserError(
            "stage=pipeline resumes by itself: continue it with resume=<its run dir> (each step resumes "
            "its own newest checkpoint); ckpt_path and weights_from are for single stages"
        )
    steps = [dict(step) for step in cfg.stage.steps]
    ids = [step["id"] for step in steps]
    bad = [s["stage"] for s in steps if s["stage"] not in runners or s["stage"] == "pipeline"]
    if bad or len(set(ids)) != len(ids):
        raise UserError(f"stage.steps: unknown stages {bad} or repeated ids {ids}; stages: {sorted(runners)}")
    state_path = run.output_dir / STATE_FILE
    done: dict[str, dict] = json.loads(state_path.read_text())["done"] if state_path.exists() else {}
    group = str(cfg.get("experiment_name") or f"pipeline-{run.output_dir.name}")
    base = run_overrides()
    for step in steps:
        if step["id"] in done:
            continue
        stage = step["stage"]
        step_cfg = _compose(
            [*base, f"stage={stage}", *knobs(stage, cfg.stage), *step.get("overrides", []), *wiring(stage, done)]
        )
        check_config(step_cfg)
        step_run = replace(run, output_dir=run.output_dir / step["id"], name=f"{run.name}/{step['id']}", group=group)
        step_run.output_dir.mkdir(parents=True, exist_ok=True)
        done[step["id"]] = {**runners[stage](step_cfg, step_run), "_stage": stage}
        write_json_atomic(state_path, {"steps": ids, "done": done})
    return {
        f"{sid}/{key}": value
        for sid, results in done.items()
        for key, value in results.items()
        if not key.startswith("_")
    }
