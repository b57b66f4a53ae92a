"""The mixer registry: every module of this package that defines `SPEC = MixerSpec(...)` is a mixer, found by name.

A mixer is what an "M" layer of the pattern runs instead of attention (all M layers of a student use the one named by
`HybridConfig.mixer`). Its module defines:
- the nn.Module, built as `module(config)`, with the attention call signature
  `forward(hidden (B, T, d), state=None, use_cache=False, rope=None) -> (out (B, T, d), new state or None)`;
  the state is the mixer's own NamedTuple of tensors (its cache: MambaState for the Mamba mixers), which
  HybridCache stores per layer without looking inside; it is replaced, never written into (the static engine's
  StaticCache copies each new state into the first one's buffers, so its tensors must keep their shapes and have
  the batch first);
- its options as a dataclass (names, defaults, checks in `resolve(config)`, which may also fill values that depend on
  the model's shape). They sit in `HybridConfig.options` and flat beside the other fields in config.json;
- optionally `init_from_attention(mixer, attention)`: copy the replaced attention layer's weights (init="attention").
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from ..config import HybridConfig


@dataclass(frozen=True)
class MixerSpec:
    name: str  # the value of HybridConfig.mixer / student.mixer
    module: Callable[[HybridConfig], nn.Module]  # one layer's mixer
    options: type  # a dataclass of the mixer's options; `resolve(config)` checks them (see the module docstring)
    init_from_attention: Callable[[nn.Module, nn.Module], Any] | None = None  # (mixer, attention): copy, in place

    def option_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.options))

    def make_options(self, given: dict[str, Any], config: HybridConfig) -> Any:
        """The mixer's options from `given` (name -> value; the rest default), checked against `config`."""
        unknown = sorted(set(given) - set(self.option_names()))
        if unknown:
            raise ValueError(
                f"mixer {self.name!r} does not take option(s) {', '.join(unknown)}; "
                f"its options: {', '.join(self.option_names()) or 'none'}"
            )
        options = self.options(**given)
        options.resolve(config)
        return options


_specs: dict[str, MixerSpec] | None = None  # found on first use: the mixer modules import the config module
# names no option may take: the HybridConfig fields, which config.json holds flat beside the options. models/config.py
# declares them when it is imported (it depends on this registry, never the other way round)
_reserved: dict[str, str] = {}  # name -> who holds it


def specs() -> dict[str, MixerSpec]:
    global _specs
    if _specs is None:
        _specs = {}
        try:
            for info in pkgutil.iter_modules(importlib.import_module(__package__).__path__):
                spec = getattr(importlib.import_module(f"{__package__}.{info.name}"), "SPEC", None)
                if spec is not None:
                    register(spec)
        except BaseException:
            _specs = None  # a module that fails to import must not leave a registry without the others
            raise
    return _specs


def reserve_option_names(names: Iterable[str], holder: str) -> None:
    """Names that no mixer option may take, because `holder` stores them beside the options (HybridConfig's fields in
    config.json); a mixer already registered with one of them is refused now."""
    _reserved.update(dict.fromkeys(names, holder))
    for spec in (_specs or {}).values():
        _check_names(spec)


def _check_names(spec: MixerSpec) -> None:
    taken = sorted(set(_reserved) & set(spec.option_names()))
    if taken:
        holders = ", ".join(sorted({_reserved[name] for name in taken}))
        raise ValueError(f"mixer {spec.name!r}: option(s) {', '.join(taken)} clash with {holders}")


def register(spec: MixerSpec) -> MixerSpec:
    """Add a mixer (the package's modules are added on first use; tests add their own)."""
    if spec.name in specs():  # first use loads the package's mixers, whose import of the config reserves its names
        raise ValueError(f"mixer {spec.name!r} is registered twice")
    _check_names(spec)
    _specs[spec.name] = spec
    return spec


def mixer_spec(name: str) -> MixerSpec:
    """The spec of mixer `name`; an unknown name raises one ValueError listing the known ones."""
    found = specs().get(name)
    if found is None:
        raise ValueError(f"mixer must be one of {', '.join(specs())}; got {name!r}")
    return found


def make_mixer(config: HybridConfig) -> nn.Module:
    """A new mixer for one layer of `config` (of kind `config.mixer`, with `config.options`)."""
    return mixer_spec(config.mixer).module(config)
