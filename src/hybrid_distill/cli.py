"""The two command-line apps: `python train.py` (`hd-train`) and `python eval.py` (`hd-eval`). Hydra composes the
config (conf/train.yaml, conf/eval.yaml); a stage of `stages/` runs it. Only Hydra is imported at the top: `--help`,
`--cfg` and tab completion never load torch or Lightning."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .atomic import check_writable
from .config_checks import check_config
from .console import print_summary
from .errors import Preempted, UserError
from .exits import FAILED, exit_on_user_error, exiting_on_user_error, remove_if_setup_only
from .launcher import register_launch_resolvers
from .noise import quiet_hydra_noise
from .paths import config_dir
from .reliability.recorded_config import check_recorded_config, record_resume, resume_checked
from .reliability.rundir import check_resume_dir, holding, register_resolvers
from .reliability.signals import handled_signals

if TYPE_CHECKING:
    from .runtime import RunContext

# the directory train.py was started from; unlike ${hydra:runtime.cwd} it also resolves while a multirun
# computes its sweep directory, before any job (and its HydraConfig) exists
if not OmegaConf.has_resolver("launch_dir"):
    OmegaConf.register_new_resolver("launch_dir", os.getcwd)
register_resolvers(
    exiting_on_user_error
)  # ${unique_dir:...}, ${run_dir:...}, ${config_subdir:...} of hydra/default.yaml
register_launch_resolvers()  # ${job_gpus:...} and ${job_tasks:...} of hydra/launcher/submitit_*.yaml
quiet_hydra_noise()  # before Hydra composes the config


def run(cfg: DictConfig) -> dict:
    """Run the configured stage; write metrics.json into the run directory; return the metrics."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from .runtime import run_context

    check_config(cfg)  # before anything is loaded
    ctx = run_context(cfg)
    # one process at a time per run directory (DDP's other ranks work in rank 0's, under its lock)
    with holding(ctx.output_dir) if rank_zero_only.rank == 0 else nullcontext():
        return _run_holding(cfg, ctx)


def _run_holding(cfg: DictConfig, ctx: RunContext) -> dict:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from .atomic import write_json_atomic
    from .noise import quiet_known_noise
    from .runtime import is_multirun, job_config
    from .stages.registry import stage_runners

    quiet_known_noise()
    start = time.perf_counter()
    check_writable(ctx.output_dir, "the run directory")
    check_writable(Path(cfg.paths.cache_dir), "paths.cache_dir (HD_CACHE_DIR)")
    if cfg.get("resume"):
        if HydraConfig.initialized() and is_multirun(HydraConfig.get().mode):
            raise UserError(
                "resume= continues one run; to continue a sweep pass hydra.sweep.dir=<its sweep dir> "
                "with the same sweep overrides"
            )
        check_resume_dir(ctx.output_dir)
    # a run continued in its directory keeps its recorded config (resume=, a requeued job, hydra.run.dir=)
    changes = check_recorded_config(job_config(cfg), ctx.output_dir)
    if rank_zero_only.rank == 0:  # written once the stage's own checks passed (runtime.build_trainer), or at the end
        record_resume(
            ctx.output_dir, changes, list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        )
    runners = stage_runners()
    if cfg.stage.name not in runners:
        raise UserError(f"stage '{cfg.stage.name}' is not runnable; choose one of {', '.join(runners)}")
    results = runners[cfg.stage.name](cfg, ctx)
    if rank_zero_only.rank == 0:  # under DDP every rank runs this; one writes
        resume_checked(ctx.output_dir)  # a stage without a Trainer (seqkd, eval) has recorded nothing yet
        write_json_atomic(ctx.output_dir / "metrics.json", results)
        (ctx.output_dir / FAILED).unlink(missing_ok=True)  # an earlier failure of this run, now resumed to the end
        print_summary(results, ctx.output_dir, time.perf_counter() - start)
    return results


def optimized_value(results: dict, key: str | None) -> float | None:
    """The run's value of `optimized_metric` (a key of its metrics.json), returned to Hydra for a sweeper (Optuna)
    to minimise or maximise; None when no metric is configured."""
    if key is None:
        return None
    value = results.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        numeric = sorted(k for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        raise UserError(
            f"optimized_metric={key!r} is not a number in this run's results "
            f"({'got ' + repr(value) if key in results else 'no such key'}); choose one of {numeric}"
        )
    return float(value)


def run_and_score(cfg: DictConfig) -> float | None:
    """What `python train.py` does: run, then return the configured metric (for hydra sweepers)."""
    return optimized_value(run(cfg), cfg.get("optimized_metric"))


def evaluate(cfg: DictConfig) -> dict:
    """What `python eval.py` does with its composed config: evaluate the checkpoint `ckpt` names. A stop signal
    (SIGTERM, SIGUSR1/2, Ctrl-C) ends it at once as preempted: its results are written only at its end."""

    def stop(signum, frame):
        raise Preempted(f"{signal.Signals(signum).name} during the evaluation")

    with handled_signals(stop):
        try:
            from .noise import quiet_known_noise
            from .stages.eval import evaluate_from_config

            quiet_known_noise()
            return evaluate_from_config(cfg)
        finally:  # results go into the evaluated run's directory: Hydra's own for this call would stay empty
            remove_if_setup_only(Path(cfg.paths.output_dir))


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
def _train(cfg: DictConfig) -> float | None:
    OmegaConf.resolve(cfg)
    return exit_on_user_error(run_and_score, cfg)


@hydra.main(config_path=config_dir(), config_name="eval", version_base="1.3")
def _eval(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    evaluate_or_exit(cfg)


def evaluate_or_exit(cfg: DictConfig) -> dict:
    """`evaluate`, ending with one line and an exit status on bad input, NaN metrics or a stop signal."""
    again = shlex.join(["python", "eval.py", *HydraConfig.get().overrides.task])
    return exit_on_user_error(evaluate, cfg, after_preemption=f"no results were written; evaluate again: {again}")


def hydra_node_in_context(argv: list[str]) -> list[str]:
    """`--cfg hydra --resolve` as `--cfg all --package hydra --resolve`: Hydra resolves the `hydra` node after removing
    the job's keys, which hydra/default.yaml and the launchers interpolate (paths.log_dir, task_name, stage.name,
    trainer.devices, ...); as a package of the whole config they resolve (e.g. a Slurm request previewed with
    `hydra/launcher=submitit_slurm`). Other arguments pass unchanged."""
    for i, (flag, value) in enumerate(zip(argv, argv[1:])):
        if flag in ("--cfg", "-c") and value == "hydra" and "--resolve" in argv:
            has_package = any(a in ("--package", "-p") or a.startswith("--package=") for a in argv)
            return [*argv[:i], "--cfg", "all", *([] if has_package else ["--package", "hydra"]), *argv[i + 2 :]]
    return argv


def train_main() -> None:
    sys.argv[1:] = hydra_node_in_context(sys.argv[1:])
    _train()


def eval_main() -> None:
    sys.argv[1:] = hydra_node_in_context(sys.argv[1:])
    _eval()
