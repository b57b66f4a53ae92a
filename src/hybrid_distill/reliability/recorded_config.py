"""The config a run directory records (`.hydra/config.yaml`) stays true: a run continued in that directory
(resume=<run dir>, a requeued job, hydra.run.dir=<run dir>) must have the same config, except for the knobs that
may change on resume (RESUMABLE). Hydra does not write over an existing record (hydra/default.yaml's
`output_subdir: ${config_subdir:...}`); a resume that changed allowed knobs is recorded in a new file beside it,
`.hydra/resume-<n>.yaml`, once the resume has passed its checks (a refused resume writes nothing).

A new run that continues another run's checkpoint (ckpt_path=) gets that run's optimizer and random states, whatever
it sets itself: `ignored_on_restore` names the knobs it set differently, for a warning."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omegaconf import OmegaConf

from ..atomic import write_file_atomic
from ..errors import UserError

RECORD = Path(".hydra") / "config.yaml"

# what may differ when a run continues: where things go, how it is logged, its callbacks (e.g. nonfinite.action=skip),
# how long it trains, and which checkpoint it continues from. Everything else would make the record false: a changed
# stage.lr, say, is ignored by the restored optimizer and scheduler, and another stage would overwrite this run's
# results.
RESUMABLE = ("resume", "ckpt_path", "trainer.max_steps", "paths", "logger", "callbacks", "experiment_name")


# run directories whose config this process recorded: new runs, not continued ones (see is_new_run)
_NEW_RUNS: set[Path] = set()


def config_subdir(output_dir: str) -> str | None:
    """hydra.output_subdir: `.hydra` for a new run; None (Hydra writes nothing) where a run has recorded its config."""
    if (Path(output_dir) / RECORD).is_file():
        return None
    _NEW_RUNS.add(Path(output_dir).resolve())
    return str(RECORD.parent)


def is_new_run(output_dir: Path) -> bool:
    """Whether this process started the run in `output_dir` (rather than continuing one recorded there)."""
    return Path(output_dir).resolve() in _NEW_RUNS


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): node}


def _resumable(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUMABLE)


def config_changes(recorded: dict, current: dict) -> dict[str, tuple[Any, Any]]:
    """key -> (recorded value, current value) for every leaf that differs."""
    old, new = _flat(recorded), _flat(current)
    return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)}


def check_recorded_config(current: dict, run_dir: Path) -> dict[str, tuple[Any, Any]]:
    """Refuse to continue the run recorded in `run_dir` with a config that differs from its record outside RESUMABLE
    (one line naming the keys). `current` is this run's resolved config without `hydra`. Returns the allowed changes
    (nothing where no config is recorded yet, or for the run that has just recorded it)."""
    path = run_dir / RECORD
    if not path.is_file():
        return {}
    try:
        recorded = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as err:  # an interpolation the record names but this process cannot resolve, or bad YAML
        raise UserError(
            f"{path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0]}); "
            "this run directory cannot be continued"
        ) from err
    changes = config_changes(recorded, current)
    old_stage, new_stage = changes.get("stage.name", (None, None))
    if old_stage != new_stage:
        raise UserError(
            f"{run_dir} is a stage={old_stage} run; it cannot continue as stage={new_stage} (that would "
            "overwrite its results): start a new run, e.g. from its student directory"
        )
    refused = [f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items() if not _resumable(k)]
    if refused:
        raise UserError(
            f"{run_dir} was recorded with another config: {'; '.join(refused[:6])}"
            f"{' ...' if len(refused) > 6 else ''}; a resumed run keeps its config (only "
            f"{', '.join(RESUMABLE)} may change): drop those overrides, or start a new run"
        )
    return changes


# resume records noted by record_resume, written by resume_checked: run directory -> writer
_PENDING: dict[Path, Callable[[], Path]] = {}


def record_resume(run_dir: Path, changes: dict[str, tuple[Any, Any]], overrides: list[str]) -> None:
    """Note the allowed changes of a resume, for a new `.hydra/resume-<n>.yaml` (the record itself stays as it was)
    that `resume_checked` writes once the resume has passed its checks."""
    _PENDING.pop(run_dir.resolve(), None)  # one of an earlier run() in this process that failed its checks
    if not changes:
        return
    record = {
        "overrides": overrides,
        "changed": {k: {"recorded": old, "now": new} for k, (old, new) in changes.items()},
    }

    def write() -> Path:
        directory = run_dir / RECORD.parent
        path = directory / f"resume-{1 + len(list(directory.glob('resume-*.yaml')))}.yaml"
        write_file_atomic(path, lambda tmp: tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(record))))
        return path

    _PENDING[run_dir.resolve()] = write


def resume_checked(directory: Path) -> Path | None:
    """The resume of the run in `directory` (or in a directory above it: a stage's, a pipeline step's) has passed its
    checks and is about to write: write its noted record, once. Returns the file written, if any."""
    directory = directory.resolve()
    for run_dir in (directory, *directory.parents):
        if run_dir in _PENDING:
            return _PENDING.pop(run_dir)()
    return None


def _restored(stage: str) -> tuple[str, ...]:
    """The knobs a restored training state overrides: the optimizer keeps its own learning rate, betas and weight
    decay (the schedule's shape is rebuilt from this run's warmup and max_steps, its base lr is restored), and the
    random states replace the seed's."""
    optim = "model.recipe.pretrain_teacher" if stage == "pretrain_teacher" else "stage"
    return ("seed", *(f"{optim}.{key}" for key in ("lr", "betas", "weight_decay")))


def ignored_on_restore(checkpoint: Path, current: dict) -> list[str]:
    """`key recorded -> now` for each knob that this run (`current`, its resolved config) sets differently from the
    run that saved `checkpoint` (its recorded config, found above the file) and that restoring the checkpoint's
    training state overrides. Nothing when no record of the same stage is found."""
    record = next((d / RECORD for d in Path(checkpoint).resolve().parents if (d / RECORD).is_file()), None)
    if record is None:
        return []
    try:
        recorded = OmegaConf.load(record)
        stage = OmegaConf.select(recorded, "stage.name")
        if stage != current.get("stage", {}).get("name"):
            return []  # e.g. a pipeline's record: its steps' configs are not recorded
        old = {key: OmegaConf.select(recorded, key) for key in _restored(stage)}
    except Exception:  # an interpolation this process cannot resolve, bad YAML: no record to compare with
        return []
    now = _flat(current)
    return [f"{key} {old[key]!r} -> {now.get(key)!r}" for key in old if _plain(old[key]) != now.get(key)]


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
