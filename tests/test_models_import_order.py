"""The model config and the mixer registry form no import circle: models/config.py depends on the registry (it looks
mixers up and reserves its field names there), the registry never imports the config at run time, and each module
imports first in a fresh interpreter."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from helpers import REPO

REGISTRY = REPO / "src" / "hybrid_distill" / "models" / "mixers" / "registry.py"


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def runtime_imports(tree: ast.AST) -> list[str]:
    """Modules a file imports when it runs (module level and inside functions), skipping `if TYPE_CHECKING:` blocks;
    relative imports keep their dots."""
    found = []
    for node in ast.iter_child_nodes(tree):
        if _is_type_checking_block(node):
            continue
        if isinstance(node, ast.ImportFrom):
            found.append("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        found += runtime_imports(node)
    return found


def test_the_mixer_registry_does_not_import_the_model_config():
    imports = runtime_imports(ast.parse(REGISTRY.read_text()))
    assert imports, "the AST walk found no imports at all"
    assert not [m for m in imports if m in ("..config", "hybrid_distill.models.config")], imports


@pytest.mark.parametrize(
    "module",
    [
        "hybrid_distill.models.config",
        "hybrid_distill.models.mixers.registry",
        "hybrid_distill.models.mixers.mamba2",
    ],
)
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    code = (
        f"import {module}\n"
        "from hybrid_distill.models.config import HybridConfig\n"
        "from hybrid_distill.models.mixers.registry import mixer_spec\n"
        "assert mixer_spec('mamba2').name == 'mamba2'\n"
        "HybridConfig(vocab_size=8, hidden_size=8, intermediate_size=8, num_attention_heads=2, "
        "num_key_value_heads=1, head_dim=4, pattern='AM')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
