"""``rating-pipeline pricebook validate``: exit 0 with a summary, or exit 1 with every error."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from rating_pipeline.cli import EXIT_FAILURE, EXIT_OK, main
from rating_pipeline.settings import PRICEBOOK_DIR_VARIABLE, project_root

ERROR_LINE = re.compile(r"^(?P<file>[^:]+\.ya?ml):(?P<line>\d+): (?P<rest>.+)$")

BROKEN = """
version: "2026-06-01"
effective_from: "2026-06-01T00:30:00Z"
currency: USD
models:
  base-large: {input_per_mtok: "2.50", output_per_mtok: "10.00", input_per_mtok: "1"}
  ft:acme:legal: {derived_from: "ft:acme:support", multiplier: "1.25"}
  ft:acme:support: {input_per_mtok: "3.75", output_per_mtok: "15"}
"""


def test_validate_prints_one_summary_line_per_version_and_exits_zero(capsys):
    assert main(["pricebook", "validate", str(project_root() / "pricebooks")]) == EXIT_OK
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert err == ""
    assert len(lines) == 2
    assert all(re.search(r", 7 models, sha256 [0-9a-f]{12}$", line) for line in lines)
    assert "2026-06-01.yaml: version 2026-06-01 effective 2026-06-01T00:00:00+00:00 USD" in lines[0]
    assert "2026-09-01.yaml: version 2026-09-01" in lines[1]


def test_validate_defaults_to_the_configured_directory(tmp_path, monkeypatch, capsys):
    (tmp_path / "v1.yaml").write_text(
        'version: v1\neffective_from: "2026-06-01T00:00:00Z"\ncurrency: USD\n'
        "models: {m: {input_per_mtok: 1, output_per_mtok: 1}}\n"
    )
    monkeypatch.setenv(PRICEBOOK_DIR_VARIABLE, str(tmp_path))
    assert main(["pricebook", "validate"]) == EXIT_OK
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'v1.yaml'}: version v1 ")


def test_validate_quotes_a_file_name_that_would_forge_a_line(tmp_path, capsys):
    """A file named 'a<newline>error: forged.yaml' printed an error line on success.
    Found by a review."""
    (tmp_path / "a\nerror: forged.yaml").write_text(
        'version: "v1"\neffective_from: "2026-06-01T00:00:00Z"\ncurrency: USD\n'
        'models:\n  m: {input_per_mtok: "1", output_per_mtok: "2"}\n'
    )
    assert main(["pricebook", "validate", str(tmp_path)]) == EXIT_OK
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(repr(str(tmp_path / "a\nerror: forged.yaml")))


def test_invalid_pricebook_exits_one_with_every_error_on_its_own_line(tmp_path, capsys):
    book = tmp_path / "2026-06-01.yaml"
    book.write_text(textwrap.dedent(BROKEN).lstrip())
    assert main(["pricebook", "validate", str(tmp_path)]) == EXIT_FAILURE
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert all(ERROR_LINE.match(line) for line in lines)
    assert lines == [
        f"{book}:2: effective_from 2026-06-01T00:30:00+00:00 is not on a whole hour",
        f"{book}:5: base-large: duplicated key 'input_per_mtok' (first at line 5)",
        f"{book}:6: ft:acme:legal: derived_from 'ft:acme:support' is a fine-tune with its own "
        "rates; only a true base (own rates, id not starting with 'ft:') can be derived from",
    ]


@pytest.mark.parametrize("make", ["missing", "empty", "unreachable"])
def test_unusable_directory_exits_one_with_a_one_line_reason(tmp_path, capsys, make):
    """``unreachable``: a path the system cannot even look up (a name longer than it
    allows; a parent the process may not search fails the same way), found by a review."""
    directory = tmp_path / "pricebooks"
    if make == "empty":
        directory.mkdir()
        (directory / "README.md").write_text("nothing here\n")
    if make == "unreachable":
        directory = tmp_path / ("p" * 300) / "pricebooks"
    assert main(["pricebook", "validate", str(directory)]) == EXIT_FAILURE
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"{directory}: ")
    assert "Traceback" not in err


def test_validate_runs_as_a_module_from_the_shell(tmp_path):
    (tmp_path / "2026-06-01.yaml").write_text(textwrap.dedent(BROKEN).lstrip())
    command = [sys.executable, "-m", "rating_pipeline", "pricebook", "validate"]
    good = subprocess.run(
        [*command, "pricebooks"], cwd=project_root(), capture_output=True, text=True, timeout=60
    )
    assert (good.returncode, good.stderr) == (0, "")
    assert len(good.stdout.splitlines()) == 2
    bad = subprocess.run(
        [*command, str(tmp_path)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert bad.returncode == 1 and bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 3 and "Traceback" not in bad.stderr
    assert all(ERROR_LINE.match(line) for line in bad.stderr.splitlines())


def test_an_interrupted_command_exits_130_as_a_shell_expects(tmp_path, monkeypatch):
    """Ctrl-C is 128 + SIGINT, never the 1 of a command that ran and found errors."""

    def interrupted(directory):
        raise KeyboardInterrupt

    monkeypatch.setattr("rating_pipeline.pricebook.loader.load_pricebooks", interrupted)
    assert main(["pricebook", "validate", str(tmp_path)]) == 130
