"""The shape the code keeps: the two entry files compose (under 200 lines each) and no function
outside the tests is over 80 lines, so a new feature gets a room of its own."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80
MAX_ENTRY_LINES = 200


def project_files() -> list[Path]:
    skip = {".venv", "tests", ".git", "out", "runs", "eval_runs", ".cache"}
    return [p for p in sorted(ROOT.rglob("*.py")) if not skip & set(p.relative_to(ROOT).parts)]


def test_the_entry_files_compose():
    for name in ("app.py", "evaluate.py"):
        lines = len((ROOT / name).read_text().splitlines())
        assert lines < MAX_ENTRY_LINES, f"{name} has {lines} lines: move the work into its package"


def test_no_function_outside_the_tests_is_over_80_lines():
    long = []
    for path in project_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert long == [], "split these into named steps:\n" + "\n".join(long)
