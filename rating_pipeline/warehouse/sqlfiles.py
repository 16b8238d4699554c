"""The warehouse's named statements, one per ``.sql`` file under ``sql/`` (short lookups
and catalog queries are constants beside the code that runs them).

Values are always bound parameters (``%(name)s``); nothing is formatted into these texts.
"""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def load_sql(name: str) -> str:
    """The statement in ``sql/<name>.sql``, its whole-line ``--`` comments removed.

    The comments document the file; removing them keeps a stray ``%`` in prose from ever
    reaching psycopg's placeholder parser.
    """
    text = resources.files("rating_pipeline.warehouse").joinpath("sql", f"{name}.sql").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).strip()
