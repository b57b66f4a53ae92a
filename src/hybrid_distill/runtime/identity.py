"""Who a run is: its output directory, W&B name and group, and its resolved config as plain data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ..atomic import remove_stale_temps


@dataclass(frozen=True)
class RunContext:
    output_dir: Path  # this run's Hydra output directory
    name: str  # derived from the command-line overrides, e.g. "mamba_ratio=0.75,loss=kl"
    group: str  # one W&B group per sweep (or per stage for single runs)


def run_context(cfg: DictConfig) -> RunContext:
    """Identity of the current run from Hydra's runtime (or cfg.paths.output_dir outside Hydra)."""
    if HydraConfig.initialized():
        output_dir = Path(HydraConfig.get().runtime.output_dir)
        name, group = name_and_group(HydraConfig.get(), cfg)
    else:
        output_dir = Path(cfg.paths.output_dir)
        name, group = "default", str(cfg.get("experiment_name") or f"{cfg.task_name}-{cfg.stage.name}")
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(output_dir)  # left by a process killed mid-write (metrics.json, ...)
    return RunContext(output_dir=output_dir, name=name, group=group)


def is_multirun(mode: Any) -> bool:
    """Hydra's run mode as the running app holds it (RunMode.MULTIRUN) or as .hydra/hydra.yaml saves it ("MULTIRUN")."""
    return str(mode).rsplit(".", 1)[-1] == "MULTIRUN"


def swept_settings(overrides: list[str]) -> dict[str, str]:
    """Command-line overrides `key=value` as a dict (a sweep member's swept settings, for W&B grouping)."""
    pairs = (o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)
    return {key: value for key, value in pairs}


def name_and_group(hc: DictConfig, cfg: DictConfig) -> tuple[str, str]:
    """A run's W&B name (its command-line overrides) and group (experiment_name, else one per sweep, else one per
    stage), from its Hydra node (HydraConfig.get(), or the `hydra` node of a run's saved .hydra/hydra.yaml)."""
    name = str(hc.job.override_dirname or "default")
    if cfg.get("experiment_name"):
        return name, str(cfg.experiment_name)
    group = f"sweep-{sweep_dir(hc).name}" if is_multirun(hc.mode) else f"{cfg.task_name}-{cfg.stage.name}"
    return name, group


def sweep_dir(hc: DictConfig) -> Path:
    """A sweep member's sweep directory: its output directory less its `sweep.subdir`. Not `sweep.dir` itself: that
    interpolates keys of the job's config (paths.log_dir, task_name), which a saved hydra.yaml lacks, and resolving
    it again would claim a new directory named after the current time (${unique_dir:...${now:...}})."""
    levels = len(Path(str(hc.sweep.subdir)).parts)
    return Path(str(hc.runtime.output_dir)).parents[levels - 1]


def job_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved run config as plain data (without Hydra's own node, present when composed in tests)."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
