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
