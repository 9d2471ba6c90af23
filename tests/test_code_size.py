"""Small modules and short functions (../shared/STYLE.md): no module in asmr_daemon/ over 400 lines,
no function over 60 lines. Counted with the AST, so docstrings and comments count like code."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "asmr_daemon"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# Modules still awaiting their owner's split (issue 10, item 4). Delete an entry when its split lands;
# new code never goes on this list.
EXCEPTIONS = {
}


def _modules() -> list[tuple[str, str]]:
    return [
        (path.relative_to(PACKAGE).as_posix(), path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def _long_functions(source: str) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function or method longer than the limit."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - first + 1
            if length > MAX_FUNCTION_LINES:
                found.append((node.name, first, length))
    return found


def test_the_package_is_found() -> None:
    assert len(_modules()) > 30


def test_no_module_is_over_the_limit() -> None:
    too_long = {
        name: len(source.splitlines())
        for name, source in _modules()
        if len(source.splitlines()) > MAX_MODULE_LINES and name not in EXCEPTIONS
    }
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines (split them by responsibility): {too_long}"


def test_no_function_is_over_the_limit() -> None:
    too_long = [
        f"{name}:{line} {func} ({length} lines)"
        for name, source in _modules()
        if name not in EXCEPTIONS
        for func, line, length in _long_functions(source)
    ]
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"


def test_exceptions_are_still_needed() -> None:
    """An entry whose module was split (or removed) must leave the list, so it cannot shelter new code."""
    sizes = {name: source for name, source in _modules()}
    stale = [
        name
        for name in EXCEPTIONS
        if name not in sizes
        or (len(sizes[name].splitlines()) <= MAX_MODULE_LINES and not _long_functions(sizes[name]))
    ]
    assert not stale, f"delete these from EXCEPTIONS, they are within the limits now: {stale}"
