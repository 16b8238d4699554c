"""The shape issue 11 gave the code, held: functions a screen long, SQL headers a few lines."""

from __future__ import annotations

import ast
from pathlib import Path

import rating_pipeline

PACKAGE = Path(rating_pipeline.__file__).parent
MAX_FUNCTION_LINES = 60
MAX_SQL_HEADER_LINES = 10


def test_no_function_of_the_package_is_longer_than_a_screen() -> None:
    long = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {length} lines"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for length in [(node.end_lineno or node.lineno) - node.lineno + 1]
        if length > MAX_FUNCTION_LINES
    ]
    assert not long, "split into named steps:\n" + "\n".join(long)


def test_every_sql_file_opens_with_a_header_of_a_few_lines() -> None:
    """Purpose, bound parameters, invariant; the reasoning lives in docs/."""
    long = []
    for path in sorted((PACKAGE / "warehouse" / "sql").glob("*.sql")):
        lines = path.read_text().splitlines()
        header = next((i for i, line in enumerate(lines) if not line.startswith("--")), 0)
        if header > MAX_SQL_HEADER_LINES:
            long.append(f"{path.name}: {header} lines")
    assert not long, "move the reasoning to docs/:\n" + "\n".join(long)
