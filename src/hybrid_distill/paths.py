"""Where the package finds its Hydra configs: `hybrid_distill/conf/` inside the package (so a wheel carries them;
the repository's top-level `conf` is a link to it), or the directory HD_CONFIG_DIR names. And how a config names the
Hugging Face hub rather than a local path: only explicitly, `hf://org/name`."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_CONF = Path(__file__).resolve().parent / "conf"


HUB_PREFIX = "hf://"


def hub_id(source: str) -> str | None:
    """`org/name` for `hf://org/name`, else None: a local path. A missing local path is never taken for a hub id (a
    typo would download someone else's repository)."""
    return source[len(HUB_PREFIX) :] if source.startswith(HUB_PREFIX) else None


def config_dir() -> str:
    """The config directory Hydra composes from: HD_CONFIG_DIR if set, else the package's own `conf/`. Its group
    options name the structured schemas of config_schema.py in their defaults lists: those are registered in Hydra's
    ConfigStore here, so that whatever composes from this directory finds them."""
    from .config_schema import register_schemas

    register_schemas()
    env = os.environ.get("HD_CONFIG_DIR")
    return str(Path(env).resolve()) if env else str(PACKAGE_CONF)
