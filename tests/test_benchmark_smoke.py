"""The benchmark suite at ``--scale tiny``: it runs end to end and reports every figure.

It never asserts a wall-clock time: it exists so that the benchmark cannot rot.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.report import GOAL_HEADERS, RESULT_HEADERS

ROWS = (
    "a", "a-default", "b", "a-write", "c", "c-compare", "d", "e", "f", "g-range", "g-sum", "g-runs",
    "h-small", "h-large", "i-floor", "i", "d-stale", "d-fresh", "j-none", "j-history",
)  # fmt: skip
GOALS = ("(b)", "(c)", "(e)", "(f)", "(g)", "(h)", "(j)", "pitfall 2")


def test_benchmark_runs_at_tiny_scale_and_reports_every_row(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "BENCHMARKS.md"
    code = main(
        ["--scale", "tiny", "--repeat", "1", "--database-url", database_url,
         "--output", str(report), "--profile"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    table = {line.split()[0] for line in printed.splitlines() if line.strip()}
    assert set(ROWS) <= table
    text = report.read_text()
    for heading in ("## Command", "## Machine", "## Data", "## Results", "## Goals", "## Profile"):
        assert heading in text
    assert "| " + " | ".join(RESULT_HEADERS) + " |" in text
    assert "| " + " | ".join(GOAL_HEADERS) + " |" in text
    for key in ROWS:
        assert f"\n| {key} |" in text
    for goal in GOALS:
        assert f"\n| {goal}" in text
    assert "postgresql" in text.lower()
    assert "python -m benchmarks --scale tiny" in text
