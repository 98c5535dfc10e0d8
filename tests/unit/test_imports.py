"""Imports in bot/: none unused (pyflakes finds nothing), and the notices' values and wording
are imported from bot/act/notices.py, where they are defined, not through the executor."""

from __future__ import annotations

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for top in ("bot", "tests", "bench") for p in (ROOT / top).rglob("*.py"))


def test_pyflakes_finds_nothing_in_bot() -> None:
    import pyflakes.api as api  # a test dependency (pyproject.toml)
    import pyflakes.reporter as reporter
    found: list[str] = []

    class Collect(reporter.Reporter):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            pass

        def flake(self, message: object) -> None:
            found.append(str(message).removeprefix(str(ROOT) + "/"))

        def syntaxError(self, filename: str, msg: str, *_: object) -> None:  # noqa: N802 (pyflakes' name)
            found.append(f"{filename}: {msg}")

        def unexpectedError(self, filename: str, msg: str) -> None:  # noqa: N802 (pyflakes' name)
            found.append(f"{filename}: {msg}")

    api.checkRecursive([str(ROOT / "bot")], Collect())
    assert found == []


def _imports_from_executor(path: Path) -> set[str]:
    """The names `path` imports from bot/act/executor.py, however it spells the module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        module = node.module or ""
        if module == "bot.act.executor" or (node.level and (
            module.endswith("act.executor") or (module == "executor" and path.parent.name == "act")
        )):
            names |= {a.name for a in node.names}
    return names


def test_the_notices_helpers_are_imported_from_notices_not_through_the_executor() -> None:
    # Imported through executor.py, they were imports kept there only for others (re-exports
    # pyflakes flags as unused), and hid where each is defined.
    tree = ast.parse((ROOT / "bot" / "act" / "notices.py").read_text())
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert {"ActionResult", "MatchedMedia", "describe_result", "describe_verdict", "media_lines", "notice_text"} <= defined
    through = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in SOURCES for name in sorted(_imports_from_executor(path) & defined)
    }
    assert sorted(through) == []
    assert "Executor" in _imports_from_executor(ROOT / "bot" / "app.py")  # the check sees imports at all
