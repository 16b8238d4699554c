"""No binary float on the money path: the source itself is checked, not just its outputs."""

from __future__ import annotations

import ast
from pathlib import Path

import rating_pipeline

PACKAGE = Path(rating_pipeline.__file__).parent
ALLOWED_MARK = "noqa: money-ok"


def _float_uses(path: Path) -> list[str]:
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Name | ast.Constant):  # what the checks below look at
            continue
        is_float_name = isinstance(node, ast.Name) and node.id == "float"
        is_float_literal = isinstance(node, ast.Constant) and type(node.value) is float
        is_float_dtype = isinstance(node, ast.Constant) and node.value in ("float", "float64")
        if (is_float_name or is_float_literal or is_float_dtype) and ALLOWED_MARK not in lines[
            node.lineno - 1
        ]:
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            found.append(f"{where}: {lines[node.lineno - 1].strip()}")
    return found


def test_no_float_in_the_package_source():
    uses = [use for path in sorted(PACKAGE.rglob("*.py")) for use in _float_uses(path)]
    assert not uses, (
        "binary float in the package (mark a non-money use with '# noqa: money-ok'):\n"
        + "\n".join(uses)
    )
