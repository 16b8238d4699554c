"""Dagster's own processes, started by a test as an operator starts them (``dagster-webserver``,
``dagster-daemon``, the ``dagster`` CLI), on a DAGSTER_HOME holding the production
``dagster.yaml`` (the ``services`` fixture)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from rating_pipeline.settings import project_root

BIN = Path(sys.executable).parent
WORKSPACE = ("-w", str(project_root() / "workspace.yaml"))
CLI_TIMEOUT_SECONDS = 300


class Services:
    """Dagster processes started by a test, each in its own session, stopped at the end."""

    def __init__(self, environment: dict[str, str], logs: Path) -> None:
        self.environment = environment
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *arguments: str) -> None:
        """Start ``name`` (a program of the virtual environment), logging to ``<name>.log``."""
        with (self.logs / f"{name}.log").open("wb") as log:
            self.processes.append(
                subprocess.Popen(
                    [str(BIN / name), *arguments],
                    env=self.environment,
                    cwd=project_root(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def run(self, name: str, *arguments: str) -> str:
        """Run ``name`` to its end; its output. CalledProcessError if it fails."""
        done = subprocess.run(
            [str(BIN / name), *arguments],
            env=self.environment,
            cwd=project_root(),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"{name} {' '.join(arguments)} failed:\n{done.stderr}")
        return done.stdout

    def stop(self) -> None:
        for process in self.processes:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_for(what: str, probe: Callable[[], Any], deadline: float) -> Any:
    """``probe()``'s first truthy answer, polled every second until ``deadline``."""
    while time.monotonic() < deadline:
        try:
            found = probe()
        except (urllib.error.URLError, ConnectionError):
            found = None
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")
