"""Every SQL statement the README and docs/ hand an operator runs on the warehouse's schema.

Each is planned (EXPLAIN, which checks every table and column it names without running it)
in a migrated warehouse, so a renamed column cannot leave a runbook's query broken.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SQL_BLOCK = re.compile(r"```sql\n(.*?)```", re.S)
COMMENT = re.compile(r"--[^\n]*")


def statements() -> list[tuple[str, str]]:
    """(where, statement) for every statement of every ```sql block."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for block in SQL_BLOCK.finditer(text):
            line = text.count("\n", 0, block.start()) + 2
            for statement in COMMENT.sub("", block.group(1)).split(";"):
                if statement.strip():
                    found.append((f"{path.relative_to(ROOT)}:{line}", statement.strip()))
    return found


STATEMENTS = statements()


def test_the_docs_hand_the_operator_sql_at_all() -> None:
    assert len(STATEMENTS) >= 6


@pytest.mark.parametrize(("where", "statement"), STATEMENTS, ids=[w for w, _ in STATEMENTS])
def test_every_sql_statement_of_the_docs_plans_on_the_schema(
    conn: psycopg.Connection, where: str, statement: str
) -> None:
    try:
        conn.execute(f"EXPLAIN {statement}")
    except psycopg.Error as exc:
        pytest.fail(f"{where}: {type(exc).__name__}: {exc}")
    finally:
        conn.rollback()
