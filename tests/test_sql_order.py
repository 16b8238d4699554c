"""Every ORDER BY on a text column sorts by code point (``COLLATE "C"``), as Python sorts
and as the invoice export does: a report, a check's listing or an invoice's accounts come
out in the same order on every warehouse, whatever its collation. The embedded server has
no linguistic collation to show the difference, so the statements themselves are read."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import rating_pipeline
from rating_pipeline.warehouse.database import connect

PACKAGE = Path(rating_pipeline.__file__).parent
TEXT_COLUMNS = """
SELECT DISTINCT column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND data_type = 'text'
"""
ORDER_BY = re.compile(r"\bORDER\s+BY\b", re.IGNORECASE)
CLAUSE_ENDS = re.compile(r"\b(LIMIT|OFFSET|FOR|WINDOW)\b|;", re.IGNORECASE)
DIRECTION = re.compile(r"\s+(ASC|DESC|NULLS\s+(FIRST|LAST))\b.*$", re.IGNORECASE | re.DOTALL)
COLUMN = re.compile(r"(?:\w+\.)?(\w+)")


def _statements() -> Iterator[tuple[str, str]]:
    """(where, text) of every .sql file and every string in the package's Python that
    holds an ORDER BY; an f-string's fields read as ``?``."""
    for path in sorted(PACKAGE.rglob("*.sql")):
        yield str(path.relative_to(PACKAGE.parent)), path.read_text()
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            elif isinstance(node, ast.JoinedStr):
                text = "".join(
                    part.value
                    if isinstance(part, ast.Constant) and isinstance(part.value, str)
                    else "?"
                    for part in node.values
                )
            else:
                continue
            if ORDER_BY.search(text):
                yield f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", text


def _terms(text: str, start: int) -> Iterator[str]:
    """The terms of the ORDER BY clause that begins at ``start``: up to the parenthesis
    that closes its expression, LIMIT and the like, or the statement's end."""
    depth, term = 0, ""
    rest = "\n".join(line.split("--")[0] for line in text[start:].splitlines())
    for index, character in enumerate(rest):
        if depth == 0 and CLAUSE_ENDS.match(rest, index):
            break
        if character == "(":
            depth += 1
        elif character == ")":
            if depth == 0:
                break
            depth -= 1
        if character == "," and depth == 0:
            yield term.strip()
            term = ""
        else:
            term += character
    if term.strip():
        yield term.strip()


def unsorted_by_code_point(
    statements: Iterable[tuple[str, str]], text_columns: set[str]
) -> list[str]:
    """Every ORDER BY term that is a bare text column without ``COLLATE "C"``."""
    found = []
    for where, text in statements:
        for clause in ORDER_BY.finditer(text):
            for term in _terms(text, clause.end()):
                bare = DIRECTION.sub("", term).strip()
                named = COLUMN.fullmatch(bare)
                if named and named.group(1) in text_columns:
                    found.append(f"{where}: ORDER BY ... {term}")
    return found


def test_reports_order_text_by_code_point(database_url: str) -> None:
    with connect(database_url) as conn:
        text_columns = {str(name) for (name,) in conn.execute(TEXT_COLUMNS)}
    assert {"auth_id", "account_id", "model_id", "reason"} <= text_columns
    unsorted = unsorted_by_code_point(_statements(), text_columns)
    assert not unsorted, "\n".join(unsorted)


def test_the_order_reader_flags_only_bare_text_columns() -> None:
    statements = [
        ("a", 'SELECT 1 ORDER BY t.auth_id DESC, hour, reason COLLATE "C" LIMIT 3'),
        ("b", "SELECT string_agg(x, ',' ORDER BY model_id) FROM y ORDER BY lower(reason)"),
        ("c", "SELECT 1 ORDER BY window_start, kind\nFOR UPDATE"),
    ]
    assert unsorted_by_code_point(statements, {"auth_id", "model_id", "reason", "kind"}) == [
        "a: ORDER BY ... t.auth_id DESC",
        "b: ORDER BY ... model_id",
        "c: ORDER BY ... kind",
    ]
