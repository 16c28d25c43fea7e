"""A lower layer never imports a higher one (DESIGN.md, "Layers")."""

from __future__ import annotations

import ast
from pathlib import Path

import distq

PACKAGE = Path(distq.__file__).parent
#: Layer rank of each top-level part of the package.
RANKS = {"errors": 0, "connection": 1, "codec": 2, "queue": 3, "endpoints": 4, "runtime": 5,
         "pool": 5,
         "ops": 6}


def _part(module: str) -> str | None:
    pieces = module.split(".")
    if pieces[0] != "distq" or len(pieces) < 2:
        return None
    return pieces[1]


def test_no_module_imports_a_higher_layer() -> None:
    offences = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        own = relative.parts[0].removesuffix(".py")
        if own not in RANKS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                part = _part(name)
                if part in RANKS and RANKS[part] > RANKS[own]:
                    offences.append(f"{relative} imports {name}")
    assert not offences, offences


def test_every_part_is_ranked() -> None:
    parts = {p.name.removesuffix(".py") for p in PACKAGE.iterdir()
             if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())}
    assert parts - {"__init__", "__main__"} <= set(RANKS)
