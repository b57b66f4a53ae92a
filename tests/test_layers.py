"""The README's architecture table is the layering of the code: each row imports only rows above it (or itself),
and every module of the package has a row. Imports inside functions count too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "src" / "hybrid_distill"


def readme_layers() -> list[set[str]]:
    """Top-level units of the package (`ops`, `losses`, ...) per row of the architecture table, in order."""
    text = (REPO / "README.md").read_text()
    table = text.split("## Architecture", 1)[1].split("\n\n", 2)[1]
    layers = []
    for row in table.splitlines()[2:]:
        place = row.split("|")[1]
        paths = re.findall(r"`([^`]+)`", place)
        if not paths or not paths[0].startswith("src/hybrid_distill/"):
            continue  # conf/, entry scripts, experiments: not modules of the package
        layers.append({Path(p).stem if p.endswith(".py") else p.rstrip("/").rsplit("/", 1)[-1] for p in paths})
    return layers


def unit_of(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def imported_units(path: Path) -> set[str]:
    """The package's top-level units that the file at `path` imports (relative and absolute imports)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            targets = (
                [".".join(base + [node.module])]
                if node.module
                else [".".join(base + [alias.name]) for alias in node.names]
            )
        elif isinstance(node, ast.ImportFrom):
            targets = [node.module or ""]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        found |= {unit_of(t) for t in targets if t.startswith("hybrid_distill.")}
    return found - {unit_of(module)}


def test_each_layer_imports_only_the_layers_above_it():
    layers = readme_layers()
    rank = {unit: i for i, layer in enumerate(layers) for unit in layer}
    units = {
        p.stem if p.suffix == ".py" else p.name
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert units <= set(rank), f"modules missing from the README's architecture table: {sorted(units - set(rank))}"
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        unit = unit_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        if unit == "__init__":
            continue
        wrong += [
            f"{path.relative_to(PACKAGE)} imports {dep}"
            for dep in imported_units(path)
            if dep != "__init__" and rank[dep] > rank[unit]
        ]
    assert not wrong, "imports against the README's layering:\n" + "\n".join(sorted(wrong))
