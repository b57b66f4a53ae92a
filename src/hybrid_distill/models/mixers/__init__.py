"""Sequence mixers that replace attention, one module each (`registry.py` says what a mixer module defines).

Adding a mixer is one new module here (its nn.Module, options dataclass and `SPEC`) plus its tests.
"""

from .registry import MixerSpec, make_mixer, mixer_spec, register, specs

__all__ = ["MixerSpec", "make_mixer", "mixer_spec", "register", "specs"]
