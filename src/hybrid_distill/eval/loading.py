"""What `ckpt=` names, and loading it: the student, its tokenizer, its training run's config and its teacher.

`ckpt` may be
- a training run directory (`.hydra/config.yaml`; the student path is read from its metrics.json, else `student/`),
- a saved student directory (`config.json` + `model.safetensors`, e.g. `<run dir>/student`), or
- a Lightning checkpoint (`<run dir>/<stage>/checkpoints/last.ckpt`): the student is rebuilt from the run's config
  and the checkpoint's weights are loaded into it.
The training run (found upwards from a student directory or checkpoint) supplies the teacher, the held-out data and
the training length; a student directory outside any run still evaluates, without teacher metrics unless
`suite.teacher=<HF dir>` is given.

A run directory may come from someone else: its config is read as data. The student is built from its saved
config.json (or, for a Lightning checkpoint, from the run's student settings by this package's builders), never from
a `_target_` of the run's config (see stages/eval.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ..errors import UserError
from ..export import load_saved_student
from ..models import HybridForCausalLM
from ..models.checkpoint import CONFIG_NAME, TIED_KEY, WEIGHTS_NAME

RUN_CONFIG = Path(".hydra") / "config.yaml"
# the state_dict prefix of the student in each stage's LightningModule
MODULE_PREFIXES = ("student.", "policy.")
# the frozen teacher / DPO reference (lit.base.StageModule.frozen): left out of checkpoints, so absent by design
FROZEN_PREFIXES = ("teacher.", "reference.")


@dataclass(frozen=True)
class Checkpoint:
    student_dir: Path | None  # a saved student, or
    lightning_ckpt: Path | None  # a Lightning checkpoint of a distill/dpo run
    run_dir: Path | None  # the training run it belongs to (None: a student dir outside any run)
    run_cfg: DictConfig | None

    @property
    def name(self) -> str:
        return str(self.student_dir or self.lightning_ckpt)


def _is_student_dir(path: Path) -> bool:
    return (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


def find_run_dir(start: Path, levels: int = 3) -> Path | None:
    """The nearest directory at or above `start` (at most `levels` up) holding a Hydra run config."""
    for path in [start, *start.parents][: levels + 1]:
        if (path / RUN_CONFIG).is_file():
            return path
    return None


def load_run_config(run_dir: Path) -> DictConfig:
    """The training run's composed config as Hydra saved it (interpolations unresolved). Paths that interpolate the
    launching process (`${launch_dir:}`, `${hydra:runtime.output_dir}`) are pinned to the training run's values,
    so its teacher cache and data cache are found wherever the evaluation is started."""
    cfg = OmegaConf.load(run_dir / RUN_CONFIG)
    saved = saved_hydra(run_dir)
    if "paths" in cfg:
        cfg.paths.output_dir = str(run_dir)
        if saved is not None and not os.environ.get("HD_ROOT_DIR"):
            cfg.paths.root_dir = str(saved.runtime.cwd)
    return cfg


def saved_hydra(run_dir: Path) -> DictConfig | None:
    """The `hydra` node the run saved (.hydra/hydra.yaml), None without one."""
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    return OmegaConf.load(hydra_yaml).hydra if hydra_yaml.is_file() else None


def student_in_run(run_dir: Path) -> Path:
    """The run's final student: the `*student_dir` its metrics.json names (a pipeline's DPO student before its
    distilled one), else `<run dir>/student`. A path inside the directory the run was written in is read inside
    `run_dir`, where that directory is now (it may have been copied or moved since)."""
    metrics = run_dir / "metrics.json"
    named = json.loads(metrics.read_text()) if metrics.is_file() else {}
    dirs = sorted(
        (key for key, value in named.items() if key.endswith("student_dir") and value), key=lambda key: "dpo" not in key
    )
    saved = saved_hydra(run_dir)
    written_in = Path(str(saved.runtime.output_dir)) if saved is not None else run_dir
    named_dirs = [Path(named[key]) for key in dirs]
    here = [run_dir / p.relative_to(written_in) if p.is_relative_to(written_in) else p for p in named_dirs]
    for path in [*here, run_dir / "student"]:
        if _is_student_dir(path):
            return path
    raise UserError(
        f"ckpt '{run_dir}' is a run directory without a saved student (no metrics.json naming a "
        f"student_dir, no {run_dir / 'student'}); did its training finish?"
    )


def resolve_checkpoint(ckpt: str | None) -> Checkpoint:
    if not ckpt:
        raise UserError("ckpt is required: python eval.py ckpt=<run dir | student dir | Lightning .ckpt file>")
    path = Path(str(ckpt)).expanduser().resolve()
    if not path.exists():
        raise UserError(f"ckpt '{path}' does not exist")
    if path.is_file():
        if path.suffix != ".ckpt":
            raise UserError(
                f"ckpt '{path}' is a file but not a Lightning checkpoint (.ckpt); pass a run directory, "
                f"a student directory or a .ckpt file"
            )
        run_dir = find_run_dir(path.parent)
        if run_dir is None:
            raise UserError(
                f"ckpt '{path}' is not inside a training run directory (no {RUN_CONFIG} above it): "
                "the run's config is needed to rebuild the student"
            )
        return Checkpoint(None, path, run_dir, load_run_config(run_dir))
    if _is_student_dir(path):
        run_dir = find_run_dir(path)
        return Checkpoint(path, None, run_dir, load_run_config(run_dir) if run_dir else None)
    if (path / RUN_CONFIG).is_file():
        return Checkpoint(student_in_run(path), None, path, load_run_config(path))
    raise UserError(
        f"ckpt '{path}' is neither a run directory ({RUN_CONFIG}), nor a saved student "
        f"({CONFIG_NAME} + {WEIGHTS_NAME}), nor a .ckpt file"
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The `state_dict` of a Lightning checkpoint. weights_only: tensors and plain containers only, so that a crafted
    file cannot run code while it is unpickled (a .ckpt is a pickle)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated, foreign or code-carrying file: one line naming it
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"ckpt '{path}' cannot be read as a Lightning checkpoint of tensors ({type(err).__name__}: {first_line})"
        ) from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"ckpt '{path}' is not a Lightning checkpoint (no state_dict)")
    return checkpoint["state_dict"]


# builds the untrained student of a training run's config from its teacher (stages.student.student_from_config)
StudentBuilder = Callable[[DictConfig, torch.nn.Module], HybridForCausalLM]


def _student_from_lightning(
    ck: Checkpoint, teacher, scan_backend: str | None, build: StudentBuilder | None
) -> HybridForCausalLM:
    cfg = ck.run_cfg
    state = read_state_dict(ck.lightning_ckpt)  # first: a file that is not a checkpoint fails before any model loads
    if cfg.stage.name == "dpo":  # DPO trains a copy of the student it starts from
        student = load_saved_student(str(cfg.stage.init_from), scan_backend)
    elif teacher is None or build is None:
        raise UserError(
            f"ckpt '{ck.lightning_ckpt}': rebuilding a distill student needs its teacher (suite.teacher=auto)"
        )
    else:
        student = build(cfg, teacher)
    for prefix in MODULE_PREFIXES:
        weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if weights:
            foreign = [k for k in state if not k.startswith((prefix, *FROZEN_PREFIXES))]
            load_matching(student, weights, foreign, ck.lightning_ckpt)
            if scan_backend:
                student.config.scan_backend = scan_backend
            return student
    raise UserError(f"ckpt '{ck.lightning_ckpt}' holds no student weights (no {' or '.join(MODULE_PREFIXES)} keys)")


def _listed(keys: list[str]) -> str:
    return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")


def load_matching(student: HybridForCausalLM, weights: dict[str, torch.Tensor], foreign: list[str], path: Path) -> None:
    """Load `weights` only if they are exactly the student's (the tied LM head may be absent): a checkpoint of another
    layer pattern or model would otherwise leave part of the student as built, and evaluate a mix."""
    expected = {k: tuple(v.shape) for k, v in student.state_dict().items()}
    optional = {TIED_KEY} if student.config.tie_word_embeddings else set()
    missing = sorted(expected.keys() - weights.keys() - optional)
    unexpected = sorted(weights.keys() - expected.keys()) + sorted(foreign)
    reshaped = [
        f"{k} {tuple(weights[k].shape)} vs {expected[k]}"
        for k in sorted(weights.keys() & expected.keys())
        if tuple(weights[k].shape) != expected[k]
    ]
    if missing or unexpected or reshaped:
        problems = [
            f"{label} {_listed(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape of", reshaped))
            if keys
        ]
        raise UserError(
            f"ckpt '{path}' does not match the student its run's config builds (pattern "
            f"{student.config.pattern}): {'; '.join(problems)}; is it from another run?"
        )
    student.load_state_dict(weights, strict=not optional)


def load_student(
    ck: Checkpoint,
    teacher,
    teacher_tokenizer: PreTrainedTokenizerBase | None,
    scan_backend: str | None,
    build: StudentBuilder | None = None,
) -> tuple[HybridForCausalLM, PreTrainedTokenizerBase]:
    """(student, tokenizer) of `ck`. A distill run's Lightning checkpoint is loaded into the student `build` makes
    from the run's config and `teacher`; a DPO one into the student it started from."""
    if ck.lightning_ckpt is not None:
        student = _student_from_lightning(ck, teacher, scan_backend, build)
        if teacher_tokenizer is None:
            raise UserError(f"ckpt '{ck.lightning_ckpt}': no tokenizer (evaluate with suite.teacher=auto)")
        return student.eval(), teacher_tokenizer
    try:
        student = load_saved_student(ck.student_dir, scan_backend)  # a student dir or an export of one
        tokenizer = AutoTokenizer.from_pretrained(str(ck.student_dir))
    except (OSError, ValueError) as err:
        raise UserError(f"ckpt '{ck.student_dir}' cannot be loaded: {err}") from err
    if teacher is not None and teacher.config.vocab_size != student.config.vocab_size:
        raise UserError(
            f"teacher vocabulary ({teacher.config.vocab_size}) differs from the student's at "
            f"'{ck.student_dir}' ({student.config.vocab_size}); pass the matching suite.teacher=<dir>"
        )
    return student.eval(), tokenizer


def train_length(ck: Checkpoint, override: int | None) -> int:
    """The sequence length the student was trained at; recall lengths are multiples of it."""
    if override:
        return int(override)
    cfg = ck.run_cfg
    if cfg is not None:
        if cfg.stage.get("seq_len"):
            return int(cfg.stage.seq_len)
        recipe = cfg.get("model", {}).get("recipe", {}).get("distill", {})
        if recipe.get("seq_len"):
            return int(recipe.seq_len)
    raise UserError(
        f"ckpt '{ck.name}': the training length is unknown (no run config); set suite.train_length=<tokens>"
    )
