"""Every command of the CLI is documented in the README; the README opens with the quickstart;
the Dagster commands the docs show are the ones tests/test_orchestration_cli.py runs."""

from __future__ import annotations

import argparse
import shlex
import tomllib
from pathlib import Path

import pytest

from rating_pipeline.cli import build_parser
from tests.test_orchestration_cli import DOCUMENTED

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()


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


@pytest.mark.parametrize("command", [shlex.join(command) for command in DOCUMENTED])
def test_the_documented_dagster_commands_are_the_tested_dg_launch(command):
    assert f"./dev run {command}\n" in README
    assert f"\n{command}\n" in OPERATIONS


def test_no_command_line_in_the_docs_uses_the_superseded_materialize_command():
    lines = [line.strip() for line in (README + OPERATIONS).splitlines()]
    assert not [line for line in lines if line.startswith("dagster asset materialize")]


def test_dg_finds_the_code_location_the_workspace_loads():
    dg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dg"]
    workspace = (ROOT / "workspace.yaml").read_text()

    assert dg["directory_type"] == "project"
    # dg's default code location module is <root_module>.definitions.
    assert f"module_name: {dg['project']['root_module']}.definitions" in workspace
