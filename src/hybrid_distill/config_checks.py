"""What a run's config must hold, checked before anything is loaded or built: `stage.lr=abc`, `trainer.max_steps=-5`
or a key that its group's schema does not declare (`+stage.lrr=0.1`) is one line naming the key, not a traceback
minutes later (or a silently odd run)."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from .config_schema import SCHEMAS, DistillationLoss, PreferenceLoss, schema_of
from .errors import UserError

# key -> (kind, lower bound, bound allowed, null allowed); keys a config does not have are not checked
NUMBERS: dict[str, tuple[type, float, bool, bool]] = {
    "seed": (int, 0, True, False),
    "mamba_ratio": (float, 0, True, False),
    "trainer.max_steps": (int, 0, True, False),
    "stage.lr": (float, 0, False, False),
    "stage.batch_size": (int, 1, True, False),
    "stage.seq_len": (int, 1, True, False),
    "stage.warmup_steps": (int, 0, True, False),
    "stage.val_every": (int, 1, True, False),
    "stage.grad_clip": (float, 0, True, True),
    "stage.max_new_tokens": (int, 1, True, False),
    "stage.target_params": (int, 1, True, False),
    "stage.hidden_size": (int, 1, True, False),
    "stage.num_layers": (int, 1, True, False),
    "stage.head_dim": (int, 1, True, False),
    "stage.mamba1_head_dim": (int, 1, True, False),
    "stage.vocab_size": (int, 1, True, False),
    "stage.max_documents": (int, 1, True, False),
    "loss.temperature": (float, 0, False, False),
    "loss.divergence_weight": (float, 0, True, False),
    "loss.ce_weight": (float, 0, True, False),
    "loss.dpo_beta": (float, 0, False, False),
    "model.recipe.pretrain_teacher.lr": (float, 0, False, False),
    "model.recipe.pretrain_teacher.batch_size": (int, 1, True, False),
    "model.recipe.pretrain_teacher.seq_len": (int, 1, True, False),
    "model.recipe.pretrain_teacher.max_steps": (int, 0, True, False),
}


def _problem(value: Any, kind: type, low: float, inclusive: bool, nullable: bool) -> str | None:
    if value is None:
        return None if nullable else "is required"
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind is int and not is_int:
        return "must be an integer"
    if kind is float and not (is_int or isinstance(value, float)):
        return "must be a number"
    if value < low or (value == low and not inclusive):
        return f"must be {'>=' if inclusive else '>'} {low:g}"
    return None


_ABSENT = object()


def number_problems(cfg: DictConfig) -> dict[str, str]:
    """key -> what is wrong, for every key of NUMBERS that `cfg` holds and that is not a number of its kind within its
    bound."""
    wrong = {}
    for key, spec in NUMBERS.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:
            continue
        problem = _problem(value, *spec)
        if problem:
            wrong[key] = f"{key}={value!r} {problem}"
    return wrong


def check_config(cfg: DictConfig) -> None:
    """The numbers (NUMBERS) and the keys and types of the groups with a schema (config_schema.SCHEMAS: stage, loss,
    student, speed), whichever way a value came in (a group option, an experiment, `key=`, `+key=`, `++key=`): one
    UserError naming every wrong key."""
    wrong = number_problems(cfg)
    for group in SCHEMAS:
        node = cfg.get(group)
        schema = _group_schema(group, node)
        if schema is not None:
            wrong.update((k, v) for k, v in schema_problems(node, schema, group, _label(group, node)) if k not in wrong)
    if wrong:
        raise UserError("; ".join(wrong.values()))


def _group_schema(group: str, node: Any) -> type | None:
    """The schema of a composed group node: the one it was composed on, else (a config built without Hydra, e.g. from
    a container) the one its contents name."""
    if not OmegaConf.is_dict(node):
        return None
    if (composed_on := schema_of(node)) is not None:
        return composed_on
    if group == "stage":
        return SCHEMAS["stage"].get(node.get("name"))
    if group == "loss":
        return DistillationLoss if "divergence" in node else PreferenceLoss if "dpo_beta" in node else None
    return SCHEMAS[group].get("base")


def _label(group: str, node: DictConfig) -> str:
    name = node.get("name") if group in ("stage", "loss") else None
    return f"{group}={name}" if isinstance(name, str) else f"the {group} group"


def schema_problems(node: DictConfig, schema: type, path: str, label: str) -> list[tuple[str, str]]:
    """(key, what is wrong) for every key of `node` that `schema` does not declare, every declared key without a value
    and every value not of its declared type (`label` names the node in the messages, e.g. `stage=distill`)."""
    hints = typing.get_type_hints(schema)
    declared = [f.name for f in dataclasses.fields(schema)]
    wrong = []
    for key in node:
        if key not in hints:
            close = difflib.get_close_matches(str(key), declared, n=1)
            hint = f" (did you mean {path}.{close[0]}?)" if close else ""
            wrong.append(
                (f"{path}.{key}", f"{path}.{key}: {label} has no key {key!r}{hint}; its keys: {', '.join(declared)}")
            )
    for f in dataclasses.fields(schema):
        key = f"{path}.{f.name}"
        if f.name not in node or OmegaConf.is_missing(node, f.name):
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                wrong.append((key, f"{key} is missing: {label} needs a value"))
            continue
        wrong += _value_problems(node[f.name], hints[f.name], key, label)
    return wrong


def _value_problems(value: Any, kind: Any, key: str, label: str) -> list[tuple[str, str]]:
    """(key, what is wrong) when `value` is not of type `kind`; the items of lists and nested schemas are checked too."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)

    def wrong() -> list[tuple[str, str]]:
        return [(key, f"{key}={_shown(value)} must be {_describe(kind)}")]

    if kind is Any:
        return []
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if (value is None and len(members) < len(args)) or any(
            not _value_problems(value, m, key, label) for m in members
        ):
            return []
        if len(members) == 1 and not _is_scalar(members[0]):  # a list or mapping, or null: name the wrong item
            return _value_problems(value, members[0], key, label)
        return wrong()
    if dataclasses.is_dataclass(kind):
        return schema_problems(value, kind, key, f"{key} of {label}") if OmegaConf.is_dict(value) else wrong()
    if origin in (tuple, list):
        fixed = origin is tuple and args[-1:] != (Ellipsis,)
        if not isinstance(value, (ListConfig, list, tuple)) or (fixed and len(value) != len(args)):
            return wrong()
        items = args if fixed else args[:1] * len(value)
        return [p for i, (v, k) in enumerate(zip(value, items)) for p in _value_problems(v, k, f"{key}.{i}", label)]
    if origin is dict or kind is dict:
        return [] if OmegaConf.is_dict(value) or isinstance(value, dict) else wrong()
    return [] if _is_instance(value, kind) else wrong()


def _is_scalar(kind: Any) -> bool:
    return kind in (bool, int, float, str)


def _is_instance(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _describe(kind: Any) -> str:
    """`kind` in words: a number, an integer or null, a list of 2 numbers, ..."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        words = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(words + (["null"] if type(None) in args else []))
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} {_plural(args[0])}"
    if origin in (tuple, list):
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin is dict or kind is dict or dataclasses.is_dataclass(kind):
        return "a mapping (key: value, ...)"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(kind, str(kind))


def _plural(kind: Any) -> str:
    if dataclasses.is_dataclass(kind):
        return "mappings"
    return {bool: "booleans", int: "integers", float: "numbers", str: "strings"}.get(kind, "values")


def _shown(value: Any) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    return repr(value)
