"""The rated windows a pricebook change would price otherwise (contract sections 4 and 6).

Every rating logs the version and the sha256 of the file that priced it. A version file
edited, or a version added with an earlier ``effective_from``, leaves the windows rated
before the change billed at the old prices until they are rated again: these are found by
comparing each window's latest rating with what the current pricebooks choose for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

import psycopg

from rating_pipeline.pricebook.model import NoPricebookForWindow, Pricebooks, PricebookVersion
from rating_pipeline.warehouse.close_mark import close_mark, window_closed
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import Window


@dataclass(frozen=True)
class PricedOtherwise:
    """A rated window whose latest rating was priced by ``rated_version`` from a file of
    ``rated_sha256``, which the current pricebooks would price with ``current`` (None: no
    version covers it now); ``closed``: re-rating it adjusts (contract 10)."""

    window: Window
    rated_version: str
    rated_sha256: str
    current: PricebookVersion | None
    closed: bool


def windows_priced_otherwise(
    conn: psycopg.Connection, pricebooks: Pricebooks
) -> list[PricedOtherwise]:
    """Every rated window, oldest first, whose latest rating read an event and was priced
    by another version or file than ``pricebooks`` choose for it now."""
    mark = close_mark(conn)
    found = []
    for window_start, version, sha256 in conn.execute(load_sql("select_latest_pricebooks")):
        window = Window(window_start.astimezone(UTC))
        try:
            current: PricebookVersion | None = pricebooks.version_for(window)
        except NoPricebookForWindow:
            current = None
        if current is None or (current.version, current.sha256) != (version, sha256):
            closed = window_closed(window.start, mark)
            found.append(PricedOtherwise(window, version, sha256, current, closed))
    return found
