"""Configuration from the environment (contract section 8). Secrets are read, never logged."""

from __future__ import annotations

import os
from pathlib import Path

DATABASE_URL_VARIABLE = "RATING_DATABASE_URL"
PRICEBOOK_DIR_VARIABLE = "RATING_PRICEBOOK_DIR"
TEST_DATABASE_URL_VARIABLE = "RATING_TEST_DATABASE_URL"


def project_root() -> Path:
    """The checkout holding ``pyproject.toml`` (where ``.rating/`` and ``pricebooks/`` live)."""
    return Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """``.rating/`` in the project: the embedded database and the demo's Dagster home."""
    return project_root() / ".rating"


def default_pricebook_dir() -> Path:
    configured = os.environ.get(PRICEBOOK_DIR_VARIABLE)
    return Path(configured) if configured else project_root() / "pricebooks"


def configured_database_url() -> str | None:
    """``RATING_DATABASE_URL`` if set; None means the embedded PostgreSQL."""
    return os.environ.get(DATABASE_URL_VARIABLE) or None
