"""The package's import graph: dependencies point one way, and no module cycle exists.

The layers, lowest first: ``errors``; ``config``; ``registry``; ``checkpoint_file``
(the torch-free checkpoint file format); ``runner`` and ``tracking`` (side by
side, neither imports the other); ``session`` (the
application layer, the only package importing both); ``cli`` (thin commands over
``session``). ``zoo`` holds example models and datasets and sits on ``runner``.

Every import counts, at module level or inside a function, except those under
``if TYPE_CHECKING:`` (annotations only: nothing runs). Read with `ast`, so the
test imports nothing it checks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trackcfg"

#: package -> the trackcfg packages it may import (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "checkpoint_file": {"errors"},
    "config": {"errors"},
    "registry": {"errors", "config"},
    "runner": {"errors", "config", "registry", "checkpoint_file"},
    "tracking": {"errors", "config", "checkpoint_file"},
    "zoo": {"errors", "config", "registry", "runner"},
    "session": {"errors", "config", "registry", "runner", "tracking", "checkpoint_file"},
    "cli": {"errors", "config", "registry", "session", "tracking"},
    "__main__": {"cli"},
    "__init__": {"errors", "config", "registry", "runner", "session"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, top: str = "trackcfg") -> Iterator[str]:
    """The ``top`` modules ``path`` imports at run time (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]

    def visit(node: ast.AST) -> Iterator[str]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == top:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] == top != "trackcfg":
                yield target
            elif target.split(".")[0] == top:
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    yield candidate if candidate in MODULES else target
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(tree)


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}
GRAPH = {
    module_name(p): {m for m in imports_of(p) if m in MODULES and m != module_name(p)}
    for p in sorted(PACKAGE.rglob("*.py"))
}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down_the_layers(module: str) -> None:
    mine = layer(module)
    wrong = sorted(
        target
        for target in GRAPH[module]
        if layer(target) != mine and layer(target) not in ALLOWED[mine]
    )
    assert not wrong, f"{module} ({mine}) imports {wrong}"


def test_no_import_cycle_between_modules() -> None:
    # A package's __init__ re-exports its modules: an edge into it stands for them.
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def walk(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                walk(target)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            walk(module)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_is_read_from_every_module() -> None:
    assert {"trackcfg.config.config", "trackcfg.runner.base_runner"} <= set(GRAPH)
    assert "trackcfg.errors" in GRAPH["trackcfg.config.config"]


#: Where MLflow is imported at run time: its one seam, and the agent's warm-up import
#: (MLflow's import overlaps the trainer's start).
MLFLOW_SEAM = {"trackcfg.tracking.mlflow_run", "trackcfg.tracking.agent.process"}


def test_mlflow_is_imported_behind_one_seam() -> None:
    importing = {module_name(p) for p in PACKAGE.rglob("*.py") if any(imports_of(p, top="mlflow"))}
    assert importing == MLFLOW_SEAM
