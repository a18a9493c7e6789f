"""Imports point down the declared layer order (README, "Layout"); a piece two areas need lives in
the lowest layer both sit on, once.

Every module's imports are read with ``ast`` (top-level and inside functions alike), so a lazy
import inside a function cannot hide an edge that points up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# bottom → top: a package may import itself and the packages before it, never one after it.
LAYERS = ("crossling", "safety", "data_recipes", "sft", "align", "evaluation", "serve")
# The dispatchers name areas as strings (importlib), never as imports: nothing to check there.


def _modules() -> list[Path]:
    return sorted(p for layer in LAYERS for p in (REPO / layer).rglob("*.py"))


def _imported(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in ``path``, nested ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def upward_edges(paths: list[Path]) -> list[str]:
    edges = []
    for path in paths:
        own = path.relative_to(REPO).parts[0]
        for line, target in _imported(path):
            if target in LAYERS and LAYERS.index(target) > LAYERS.index(own):
                edges.append(f"{path.relative_to(REPO)}:{line}: {own} imports {target}")
    return edges


def test_every_area_is_a_layer():
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "bench", "scripts"}
    assert packages == set(LAYERS), "a new top-level package needs a place in LAYERS (and the README)"


def test_imports_point_down_only():
    assert _modules(), "no modules found"
    assert upward_edges(_modules()) == []


def test_an_upward_import_inside_a_function_is_caught(tmp_path):
    # the checker itself: a lazy import in a function body is an edge like any other
    fake = REPO / "safety" / "_layer_probe_for_test.py"
    fake.write_text("def f():\n    from serve.app import create_app\n    return create_app\n")
    try:
        assert upward_edges([fake]) == ["safety/_layer_probe_for_test.py:2: safety imports serve"]
    finally:
        fake.unlink()


@pytest.mark.parametrize("package", LAYERS)
def test_each_area_exports_its_api(package):
    module = __import__(package)
    exported = getattr(module, "__all__", None)
    assert exported, f"{package}/__init__.py declares no __all__"
    for name in exported:
        assert hasattr(module, name), f"{package}.__all__ names {name!r}, which it does not define"
