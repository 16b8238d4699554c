"""The warehouse resource's connections and transactions (contract section 8): what each
one promises the checks, sensors and invoices that read through it. Real database."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import psycopg
import pytest

from rating_pipeline.orchestration.resources import WarehouseResource
from tests.factories import BillingEvent, make_event

AddEvents = Callable[[Iterable[BillingEvent]], int]
COUNT_EVENTS = "SELECT count(*) FROM billing_event"
DELETE_EVENTS = "DELETE FROM billing_event"


def _events(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(COUNT_EVENTS).fetchone()
    assert row is not None
    return int(row[0])


def test_a_snapshot_reads_one_state_whatever_commits_meanwhile(
    database_url: str, add_events: AddEvents
) -> None:
    """A check's totals and its rows come from the same instant: an event that lands
    between two of its statements is in neither."""
    warehouse = WarehouseResource(database_url=database_url)
    with warehouse.snapshot() as conn:
        before = conn.execute(COUNT_EVENTS).fetchone()
        add_events([make_event(event_id="landed-meanwhile")])
        after = conn.execute(COUNT_EVENTS).fetchone()
    assert before == after == (0,)
    assert _events(database_url) == 1


def test_a_snapshot_refuses_to_write(database_url: str, add_events: AddEvents) -> None:
    add_events([make_event()])
    warehouse = WarehouseResource(database_url=database_url)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), warehouse.snapshot() as conn:
        conn.execute(DELETE_EVENTS)
    assert _events(database_url) == 1


def test_a_rolled_back_transaction_reads_one_state_and_keeps_none_of_its_writes(
    database_url: str, add_events: AddEvents
) -> None:
    """Its scratch writes (temp tables, or anything else) never reach the warehouse, and
    its reads, like a snapshot's, see one instant."""
    add_events([make_event()])
    warehouse = WarehouseResource(database_url=database_url)
    with warehouse.rolled_back() as conn:
        before = conn.execute(COUNT_EVENTS).fetchone()
        add_events([make_event(event_id="landed-meanwhile")])
        after = conn.execute(COUNT_EVENTS).fetchone()
        conn.execute(DELETE_EVENTS)
    assert before == after == (1,)
    assert _events(database_url) == 2


def test_a_connection_is_closed_when_its_block_ends_even_on_an_error(database_url: str) -> None:
    """A long-lived daemon (the sensor, the run workers) opens one per tick: none may leak."""
    warehouse = WarehouseResource(database_url=database_url)
    with warehouse.connect() as conn:
        pass
    assert conn.closed
    with pytest.raises(psycopg.errors.UndefinedTable), warehouse.connect() as failing:
        failing.execute("SELECT * FROM no_such_table")
    assert failing.closed
