"""The checksum a rating logs describes the window's rows as that rating leaves them.

A rating whose inputs did not change carries its predecessor's checksum instead of rendering
every row again; a write to the outputs outside a rating (migration 0004 counts them) stops
the carry, so a hand edit can never leave a stale checksum in the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import psycopg
import pytest

from rating_pipeline import oracle
from rating_pipeline.pricebook.model import Pricebooks
from rating_pipeline.records import BillingEvent
from rating_pipeline.warehouse import engine
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.warehouse.outputs import load_window
from rating_pipeline.windows import Window
from tests.factories import WINDOW_START, make_event, make_version, own

WINDOW = Window(WINDOW_START)
VERSION = make_version({"base-large": own("2.50", "10.00")})
REPRICED = make_version({"base-large": own("3.00", "12.00")})
EVENTS = [
    make_event("org-1", "base-large"),
    make_event("org-2", "base-large"),
    make_event("org-2", "mystery"),
]
AddEvents = Callable[[Iterable[BillingEvent]], int]


def _logged_checksums(reader: psycopg.Connection) -> list[str]:
    rows = reader.execute("SELECT output_checksum FROM rating_log ORDER BY log_id").fetchall()
    return [checksum for (checksum,) in rows]


def _count_renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every full checksum computation (the SQL that renders every row)."""
    renders: list[str] = []
    load_sql = engine.load_sql

    def recording_load_sql(name: str) -> str:
        if name == "window_output_checksum":
            renders.append(name)
        return load_sql(name)

    monkeypatch.setattr(engine, "load_sql", recording_load_sql)
    return renders


def test_identical_rerun_carries_the_checksum_of_the_rows_it_left_unchanged(
    conn: psycopg.Connection,
    reader: psycopg.Connection,
    add_events: AddEvents,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_events(EVENTS)
    renders = _count_renders(monkeypatch)
    first = rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-1")
    again = rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-2")
    assert again.rows_written == 0
    assert renders == ["window_output_checksum"]  # the first run only
    expected = oracle.rate_window(WINDOW, VERSION, EVENTS).checksum
    assert first.checksum == again.checksum == load_window(conn, WINDOW).checksum == expected
    assert _logged_checksums(reader) == [expected, expected]


def test_edit_outside_a_rating_is_never_covered_by_a_carried_checksum(
    conn: psycopg.Connection,
    reader: psycopg.Connection,
    add_events: AddEvents,
) -> None:
    add_events(EVENTS)
    rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-1")
    # By hand, the rows become exactly what REPRICED will produce: the re-rate then writes
    # nothing, yet its rows are not the ones run-1 logged a checksum for.
    reader.execute(
        "UPDATE rated_usage SET input_rate_per_mtok = 3.00, output_rate_per_mtok = 12.00,"
        " cost_usd = (input_tokens * 3.00 + output_tokens * 12.00) * 0.000001,"
        " pricebook_version = %(version)s, pricebook_sha256 = %(sha)s",
        {"version": REPRICED.version, "sha": REPRICED.sha256},
    )
    reader.execute(
        "UPDATE rating_exception SET pricebook_version = %(version)s",
        {"version": REPRICED.version},
    )
    result = rate_window(conn, WINDOW, Pricebooks((REPRICED,)), "run-2")
    assert result.rows_written == 0
    expected = oracle.rate_window(WINDOW, REPRICED, EVENTS).checksum
    assert result.checksum == load_window(conn, WINDOW).checksum == expected
    assert _logged_checksums(reader)[-1] == expected


def test_after_an_edit_the_next_identical_rerun_carries_again(
    conn: psycopg.Connection,
    reader: psycopg.Connection,
    add_events: AddEvents,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_events(EVENTS)
    rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-1")
    reader.execute("UPDATE rated_usage SET run_id = 'by-hand'")  # no value the checksum sees
    renders = _count_renders(monkeypatch)
    for run_id in ("run-2", "run-3"):
        rate_window(conn, WINDOW, Pricebooks((VERSION,)), run_id)
    assert renders == ["window_output_checksum"]  # run-2 recomputed, run-3 carried
    expected = oracle.rate_window(WINDOW, VERSION, EVENTS).checksum
    assert set(_logged_checksums(reader)) == {expected}


def test_rating_writes_are_not_counted_as_edits(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    add_events(EVENTS)
    rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-1")
    rate_window(conn, WINDOW, Pricebooks((REPRICED,)), "run-2")
    edits = reader.execute("SELECT edits FROM rated_output_edit").fetchone()
    logged: list[Any] = reader.execute(
        "SELECT output_edits_seen FROM rating_log ORDER BY log_id"
    ).fetchall()
    assert edits == (0,)
    assert logged == [(0,), (0,)]


def test_checksum_orders_whole_lines_even_where_a_key_is_a_prefix_of_another(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    # "x" then TAB sorts after "x\x01": ordering by the bare keys would put "x" first.
    version = make_version({"m": own("1", "2"), "m\x01": own("3", "4")})
    events = [
        make_event("x", "m"),
        make_event("x\x01", "m"),
        make_event("x", "m\x01"),
        make_event("x\x01", "m\x01"),
        make_event("x", "unlisted"),
        make_event("x\x01", "unlisted"),
    ]
    add_events(events)
    result = rate_window(conn, WINDOW, Pricebooks((version,)), "run-1")
    assert result.checksum == oracle.rate_window(WINDOW, version, events).checksum
