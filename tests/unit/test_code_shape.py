"""The shape rules of STYLE.md that no linter checks: short functions, no private imports."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
MAX_FUNCTION_LINES = 60


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in sorted(APP.rglob("*.py"))]


def test_no_function_in_app_is_longer_than_a_screen() -> None:
    too_long = [
        f"{path.relative_to(APP.parent)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert too_long == []


def test_no_module_imports_a_private_name_from_another_module() -> None:
    private = [
        f"{path.relative_to(APP.parent)}:{node.lineno} {alias.name} from {node.module}"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app")
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert private == []


def test_the_shape_checks_can_fail() -> None:
    sample = ast.parse("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES + "\nfrom app.x import _y\n")
    (function,) = [n for n in ast.walk(sample) if isinstance(n, ast.FunctionDef)]
    assert function.end_lineno is not None and function.end_lineno - function.lineno + 1 > MAX_FUNCTION_LINES
    (imported,) = [n for n in ast.walk(sample) if isinstance(n, ast.ImportFrom)]
    assert imported.names[0].name.startswith("_")
