"""The size rules of the code base (DEVELOPERS: small modules with one job): no module over
about 500 lines, no function over about 80 lines. The bounds carry a little slack ("about");
a module or function that grows past them is split by job, not squeezed."""

from __future__ import annotations

import ast
from pathlib import Path

import firereg

ROOT = Path(firereg.__file__).resolve().parent
MAX_MODULE_LINES = 520
MAX_FUNCTION_LINES = 90


def _modules() -> list[Path]:
    return sorted(p for room in ("transforms", "pipelines", "evaluation") for p in (ROOT / room).rglob("*.py"))


def test_no_module_is_over_about_500_lines():
    modules = _modules()
    assert len(modules) > 40
    long = {str(p.relative_to(ROOT)): n for p in modules if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_is_over_about_80_lines():
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = lines
    assert long == {}
