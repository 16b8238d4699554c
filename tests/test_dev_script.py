"""./dev, the README's entry point, under /bin/sh: it installs the project whole or again.

A stand-in interpreter records what ./dev asks of it, so these run in a second."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from rating_pipeline.settings import project_root

# Answers the version check, makes a venv of itself, records pip's calls and the umask.
STAND_IN_PYTHON = """#!/bin/sh
echo "$* umask=$(umask)" >> "$DEV_LOG"
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$4/bin" && cp "$0" "$4/bin/python"; fi
exit 0
"""


def dev(project: Path, *args: str, umask: str = "022") -> list[str]:
    """Run ./dev in ``project`` with the stand-in; the calls it made, one per line."""
    log = project / "calls.log"
    log.unlink(missing_ok=True)
    subprocess.run(
        ["/bin/sh", "-c", f'umask {umask} && exec /bin/sh ./dev "$@"', "dev", *args],
        cwd=project,
        env={**os.environ, "PYTHON": str(project / "python"), "DEV_LOG": str(log)},
        check=True,
    )
    return log.read_text().splitlines() if log.exists() else []


def a_project(tmp_path: Path) -> Path:
    shutil.copy(project_root() / "dev", tmp_path / "dev")
    shutil.copy(project_root() / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "python").write_text(STAND_IN_PYTHON)
    (tmp_path / "python").chmod(stat.S_IRWXU)
    return tmp_path


def test_a_venv_whose_first_install_was_interrupted_is_rebuilt_and_installed(tmp_path):
    """Ctrl-C during the first run's install left .venv/bin/python without .installed:
    under dash, ./dev skipped the install ever after and ran without dagster. Found by an
    audit of the quickstart."""
    project = a_project(tmp_path)
    (project / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(project / "python", project / ".venv" / "bin" / "python")

    calls = dev(project, "run", "true")

    assert any(call.startswith("-m venv --clear") for call in calls), calls
    assert any(
        call.startswith("-m pip install --quiet --disable-pip-version-check -e") for call in calls
    )
    assert (project / ".venv" / ".installed").exists()
    assert dev(project, "run", "true") == []  # installed whole: nothing to do


def test_a_changed_pyproject_reinstalls_into_the_same_venv(tmp_path):
    project = a_project(tmp_path)
    dev(project, "run", "true")
    os.utime(project / ".venv" / ".installed", (0, 0))

    calls = dev(project, "run", "true")

    assert calls and not any(call.startswith("-m venv") for call in calls), calls


def test_the_install_is_readable_by_all_whatever_the_umask(tmp_path):
    """As root, the embedded PostgreSQL runs as another user and loads libraries pip
    installed: under umask 077 it could not, and the first run failed."""
    project = a_project(tmp_path)

    calls = dev(project, "run", "true", umask="077")

    assert calls and all(call.endswith("umask=0022") for call in calls[1:]), calls
