"""The benchmark suite at ``--scale tiny``: it runs end to end and reports every case.

It never asserts a wall-clock time: it exists so that the benchmark cannot rot.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.report import BY_HAND, GOAL_HEADERS, RESULT_HEADERS
from benchmarks.suite import CASES


def test_benchmark_runs_at_tiny_scale_and_reports_every_case(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "BENCHMARKS.md"
    code = main(
        ["--scale", "tiny", "--rounds", "1", "--database-url", database_url,
         "--output", str(report), "--profile"]
    )  # fmt: skip
    assert code == 0
    printed = {tuple(line.split()[:2]) for line in capsys.readouterr().out.splitlines()}
    text = report.read_text()
    for heading in ("## Command", "## Machine", "## Data", "## Goals", "## Results", "## Profile"):
        assert heading in text
    assert "| " + " | ".join(RESULT_HEADERS) + " |" in text
    assert "| " + " | ".join(GOAL_HEADERS) + " |" in text
    for case in CASES:
        for step in case.steps:
            assert f"\n| {case.name} | {step.name} |" in text
            assert (case.name, step.name) in printed
        for goal in case.goals:
            assert f"\n| {case.name} | {goal.text} |" in text
    assert "nothing written or locked" in text
    assert "postgresql" in text.lower()
    assert "python -m benchmarks --scale tiny" in text


def test_a_case_can_be_measured_alone_keeping_the_section_written_by_hand(
    database_url: str, tmp_path: Path
) -> None:
    report = tmp_path / "BENCHMARKS.md"
    by_hand = f"{BY_HAND} (appended by hand)\n\nA figure from another command.\n"
    report.write_text(f"# Benchmarks\n\n## Goals\n\nan older run\n\n{by_hand}")
    code = main(
        ["--scale", "tiny", "--rounds", "1", "--database-url", database_url,
         "--output", str(report), "--case", "hot-hour"]
    )  # fmt: skip
    assert code == 0
    text = report.read_text()
    assert "\n| hot-hour | first-rating |" in text
    assert "| month |" not in text
    assert "an older run" not in text
    assert text.endswith(f"\n\n{by_hand}")
