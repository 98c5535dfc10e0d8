"""The layout of bot/ (issue 11): every module says what it is for, none is over 450 lines, and
the throwaway Synapse of bot/demo/ stays out of the product code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parents[2] / "bot"
MAX_LINES = 450

MODULES = sorted(p for p in BOT.rglob("*.py") if "migrations" not in p.relative_to(BOT).parts)


def _name(path: Path) -> str:
    return path.relative_to(BOT).as_posix()


def test_the_modules_are_found() -> None:
    assert len(MODULES) > 50
    assert BOT / "cli" / "__init__.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_every_module_says_what_it_is_for(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and docstring.strip(), f"bot/{_name(path)} has no docstring"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_module_is_over_450_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"bot/{_name(path)} has {lines} lines"


@pytest.mark.parametrize("path", [p for p in MODULES if _name(p).split("/")[0] not in ("cli", "demo")], ids=_name)
def test_only_the_cli_imports_the_demo(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            names = [a.name for a in node.names]
            assert not (module.lstrip(".").startswith("demo") or module.startswith("bot.demo")) and not (
                module.strip(".") in ("", "bot") and "demo" in names
            ), f"bot/{_name(path)} imports the demo ({module})"
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("bot.demo") for a in node.names), f"bot/{_name(path)} imports the demo"


def _module_name(path: Path) -> tuple[str, bool]:
    parts = ["bot", *path.relative_to(BOT).with_suffix("").parts]
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _imports(path: Path, names: set[str]) -> set[str]:
    """Every bot module `path` imports, at module level or inside a function alike."""
    current, is_package = _module_name(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = current.split(".") if is_package else current.split(".")[:-1]
            if node.level:
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            candidates = [f"{target}.{a.name}" for a in node.names] + [target]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in names:
                candidate = candidate.rpartition(".")[0]
            # A module importing its own package (`from bot.classify import ...` inside
            # bot/classify/) is Python's package mechanics, not a circle between modules.
            if candidate and candidate != current and not current.startswith(candidate + "."):
                found.add(candidate)
    return found


def test_no_module_imports_itself_back_through_others() -> None:
    """No import circle among bot's modules; a function-level import counts like any other."""
    names = {_module_name(p)[0]: p for p in MODULES}
    graph = {name: _imports(path, set(names)) for name, path in names.items()}
    circles: list[list[str]] = []
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            circles.append(trail[trail.index(name):] + [name])
            return
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles[:5])
