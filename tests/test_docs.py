"""Every command of the CLI is documented in the README; the README opens with the quickstart."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from rating_pipeline.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix}{name}"
                nested = _commands(sub, f"{path} ")
                found.extend(nested or [path])
    return found


@pytest.mark.parametrize("command", _commands(build_parser()))
def test_every_cli_command_is_documented_in_the_readme(command):
    assert f"rating_pipeline {command}" in README or f"rating-pipeline {command}" in README


def test_readme_opens_with_the_two_command_quickstart():
    first_block = README.split("```")[1]
    assert "./dev demo" in first_block and "./dev test" in first_block


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./dev test" in ci
