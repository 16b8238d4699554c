"""A re-rate whose inputs did not change leaves the window without comparing its rows.

The engine skips the comparison only when the window's latest rating logged the same
input fingerprint (the summed events, the values the statements bind, the pricebook file,
the release: its sources, statements and libraries) and nothing outside a rating has
written the outputs since.
Each test here changes one of those and shows that the rows are compared again and take
the new output (the oracle's, where the change is one the oracle can see).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterable
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rating_pipeline import oracle
from rating_pipeline.pricebook.model import Pricebooks, PricebookVersion
from rating_pipeline.records import BillingEvent
from rating_pipeline.warehouse import engine, fingerprint, reconcile
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.warehouse.outputs import load_window
from rating_pipeline.windows import Window
from tests.conftest import delete_events
from tests.factories import WINDOW_START, derived, make_event, make_version, own

WINDOW = Window(WINDOW_START)
RATES = {
    "base-large": own("2.50", "10.00"),
    "base-small": own("0.15", "0.60"),
    "ft:acme:legal": derived("base-large", "1.25"),
}
VERSION = make_version(RATES)
EVENTS = [
    make_event("org-1", "base-large", input_tokens=100, output_tokens=10, event_id="ev-1"),
    make_event("org-2", "base-large", input_tokens=200, output_tokens=20, event_id="ev-2"),
    make_event("org-3", "ft:acme:legal", event_id="ev-3"),
    make_event("org-3", "mystery", event_id="ev-4"),
    make_event("", "base-small", event_id="ev-5"),
]
AddEvents = Callable[[Iterable[BillingEvent]], int]


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The run ids of the ratings that compared the window's rows (``converge_window``)."""
    runs: list[str] = []
    converge_window = engine.converge_window

    def recording_converge_window(*args: Any) -> engine.Converged:
        runs.append(args[4])
        return converge_window(*args)

    monkeypatch.setattr(engine, "converge_window", recording_converge_window)
    return runs


def _assert_matches_oracle(
    conn: psycopg.Connection, version: PricebookVersion, events: Iterable[BillingEvent]
) -> None:
    stored = load_window(conn, WINDOW)
    expected = oracle.rate_window(WINDOW, version, list(events))
    assert stored.rollups == expected.rollups
    assert stored.exceptions == expected.exceptions


def test_unchanged_inputs_carry_the_latest_ratings_counts_totals_and_checksum(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents, compared: list[str]
) -> None:
    add_events(EVENTS)
    first = rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-1")
    second = rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-2")

    assert compared == ["run-1"]
    assert second.rows_written == 0
    assert second.usage_counts.unchanged == first.usage_counts.inserted == 3
    assert second.exception_counts.unchanged == first.exception_counts.inserted == 2
    assert second.rating == first.rating
    logged = reader.execute(
        "SELECT run_id, rows_unchanged, exceptions_unchanged, events_read, events_rated,"
        " total_cost_usd, output_checksum, input_fingerprint FROM rating_log ORDER BY log_id"
    ).fetchall()
    assert [row[0] for row in logged] == ["run-1", "run-2"]
    assert logged[1][1:3] == (3, 2)
    assert logged[1][3:] == logged[0][3:]
    assert logged[1][-1] is not None and len(logged[1][-1]) == 64


def test_unchanged_events_are_digested_but_not_summed_into_window_usage(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    add_events(EVENTS)
    first = rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-1")
    rows_in_window_usage = "SELECT count(*) FROM window_usage"

    # In the rating's own transaction, where window_usage lives until the commit.
    with conn.transaction(force_rollback=True):
        rerun = engine.rate_window_in_transaction(conn, WINDOW, VERSION, "run-2")
        assert conn.execute(rows_in_window_usage).fetchone() == (0,)
    assert rerun.rows_written == 0 and rerun.checksum == first.checksum
    assert rerun.rating.events_read == first.rating.events_read == len(EVENTS)

    add_events([make_event("org-9", "base-small", event_id="ev-9")])
    with conn.transaction(force_rollback=True):
        changed = engine.rate_window_in_transaction(conn, WINDOW, VERSION, "run-3")
        assert conn.execute(rows_in_window_usage).fetchone() == (len(EVENTS) + 1,)
    assert changed.usage_counts.inserted == 1


def test_rerate_restores_rows_edited_or_deleted_outside_a_rating(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents, compared: list[str]
) -> None:
    add_events(EVENTS)
    rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-1")
    # Edits the CHECK constraints accept: a consistent cost, a deleted row of each table.
    reader.execute(
        "UPDATE rated_usage SET input_tokens = input_tokens + 1000, cost_usd = ((input_tokens"
        " + 1000) * input_rate_per_mtok + output_tokens * output_rate_per_mtok) * 0.000001"
        " WHERE auth_id = 'org-1'"
    )
    reader.execute("DELETE FROM rated_usage WHERE auth_id = 'org-2'")
    reader.execute("DELETE FROM rating_exception WHERE model_id = 'mystery'")

    second = rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-2")

    assert compared == ["run-1", "run-2"]
    assert (second.usage_counts.inserted, second.usage_counts.updated) == (1, 1)
    assert second.exception_counts.inserted == 1
    _assert_matches_oracle(conn, VERSION, EVENTS)


def test_rerate_sees_token_sums_swapped_between_rollups(
    database_url: str, conn: psycopg.Connection, add_events: AddEvents, compared: list[str]
) -> None:
    add_events(EVENTS)
    rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-1")
    # The same multiset of values, on other rows: a digest summing per-column hashes would
    # not see it.
    swapped = [
        make_event("org-1", "base-large", input_tokens=200, output_tokens=20, event_id="ev-1b"),
        make_event("org-2", "base-large", input_tokens=100, output_tokens=10, event_id="ev-2b"),
    ]
    delete_events(database_url, ["ev-1", "ev-2"])
    add_events(swapped)

    second = rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-2")

    assert compared == ["run-1", "run-2"]
    assert second.usage_counts.updated == 2
    _assert_matches_oracle(conn, VERSION, [*swapped, *EVENTS[2:]])


def test_rerate_compares_again_under_another_pricebook_file_of_the_same_version(
    conn: psycopg.Connection, add_events: AddEvents, compared: list[str]
) -> None:
    add_events(EVENTS)
    rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-1")
    # Same version name and the same rates for every model billed: only the file's sha256
    # differs, and every row records it.
    edited = make_version({**RATES, "base-tiny": own("0.01", "0.02")})
    assert edited.version == VERSION.version and edited.sha256 != VERSION.sha256

    second = rate_window(conn, WINDOW, Pricebooks((edited,)), "run-2")

    assert compared == ["run-1", "run-2"]
    assert second.usage_counts.updated == 3
    _assert_matches_oracle(conn, edited, EVENTS)


def test_rerate_compares_again_under_another_release(
    conn: psycopg.Connection, add_events: AddEvents, compared: list[str], monkeypatch: Any
) -> None:
    add_events(EVENTS)
    rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-1")
    # A fix to the rules ships as a release (other sources): the derived multiplier differs,
    # the pricebook does not.
    fixed = make_version({**RATES, "ft:acme:legal": derived("base-large", "1.50")})
    resolution_row = engine.resolution_row

    def fixed_rules(version: PricebookVersion, model_id: str, bases_key: str) -> Any:
        return resolution_row(fixed, model_id, bases_key)

    monkeypatch.setattr(engine, "resolution_row", fixed_rules)
    monkeypatch.setattr(fingerprint, "release_digest", lambda: "a later release")
    second = rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-2")
    third = rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-3")

    assert compared == ["run-1", "run-2"]
    assert second.usage_counts.updated == 1 and third.rows_written == 0
    legal = [r for r in load_window(conn, WINDOW).rollups if r.model_id == "ft:acme:legal"]
    assert [r.multiplier for r in legal] == [Decimal("1.5")]


def test_release_digest_covers_every_source_of_the_package(tmp_path: Path) -> None:
    package = resources.files("rating_pipeline")
    assert isinstance(package, Path)
    copy = tmp_path / "rating_pipeline"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert fingerprint.source_digest(copy) == fingerprint.source_digest(package)

    rules = copy / "pricing" / "resolve.py"
    rules.write_text(rules.read_text() + "\n# a fix to the rules\n")
    assert fingerprint.source_digest(copy) != fingerprint.source_digest(package)
    # Caches are not sources.
    rules.write_text((package / "pricing" / "resolve.py").read_text())
    (copy / "pricing" / "__pycache__").mkdir(exist_ok=True)
    (copy / "pricing" / "__pycache__" / "resolve.cpython-311.pyc").write_bytes(b"\0")
    assert fingerprint.source_digest(copy) == fingerprint.source_digest(package)


def test_release_digest_covers_the_statements(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fingerprint.compute_release_digest() == fingerprint.release_digest()
    monkeypatch.setattr(fingerprint, "statements_digest", lambda: "other statements")
    assert fingerprint.compute_release_digest() != fingerprint.release_digest()


def test_rerate_compares_again_under_another_schema_revision(
    conn: psycopg.Connection, add_events: AddEvents, compared: list[str], monkeypatch: Any
) -> None:
    add_events(EVENTS)
    rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-1")
    monkeypatch.setattr(fingerprint, "SCHEMA_REVISION", "SELECT 'a later revision'")

    second = rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-2")
    third = rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-3")

    assert compared == ["run-1", "run-2"]
    assert second.rows_written == third.rows_written == 0


def test_rerate_compares_again_when_the_parsed_pricebook_differs_under_the_same_sha256(
    conn: psycopg.Connection, add_events: AddEvents, compared: list[str]
) -> None:
    # However a version was built, what the rules read from it is in the fingerprint.
    events = [*EVENTS, make_event("org-4", "ft:unlisted", "base-small", event_id="ev-6")]
    add_events(events)
    rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-1")
    deriving = dataclasses.replace(VERSION, fine_tune_multiplier=Decimal("1.5"))
    assert (deriving.version, deriving.sha256) == (VERSION.version, VERSION.sha256)

    second = rate_window(conn, WINDOW, Pricebooks((deriving,)), "run-2")

    assert compared == ["run-1", "run-2"]
    assert second.usage_counts.inserted == 1
    _assert_matches_oracle(conn, deriving, events)


def test_rerate_compares_again_after_a_log_row_without_an_events_digest(
    conn: psycopg.Connection, add_events: AddEvents, compared: list[str]
) -> None:
    # As the rows logged before migration 0006 are.
    add_events(EVENTS)
    rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-1")
    conn.execute("UPDATE rating_log SET events_digest = NULL")
    conn.commit()

    second = rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-2")
    third = rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-3")

    assert compared == ["run-1", "run-2"]
    assert second.rows_written == third.rows_written == 0


DERIVING = make_version(RATES, fine_tune_multiplier="1.5")
EVENT_CHANGES = {
    # base_model "" becomes NULL: another bases key, another answer from the rules.
    "empty_base_becomes_null": (
        [make_event("org-3", "ft:unlisted", "", event_id="ev-6")],
        [make_event("org-3", "ft:unlisted", None, event_id="ev-6")],
    ),
    # Only an invalid event's tokens change.
    "invalid_event_tokens": (
        [make_event("", "base-small", input_tokens=8, event_id="ev-6")],
        [make_event("", "base-small", input_tokens=7, event_id="ev-6")],
    ),
    # Only a negative-token event's tokens change: its key has no other event.
    "negative_tokens": (
        [make_event("org-4", "base-small", input_tokens=-1, event_id="ev-6")],
        [make_event("org-4", "base-small", input_tokens=-2, event_id="ev-6")],
    ),
    # A billed rollup gains a second base: its per-base rows are merged, and it is gated.
    "rollup_becomes_mixed_bases": (
        [
            make_event("org-1", "ft:unlisted", "base-large", event_id="ev-6"),
            make_event("org-1", "ft:unlisted", "base-large", event_id="ev-7"),
        ],
        [
            make_event("org-1", "ft:unlisted", "base-small", event_id="ev-6"),
            make_event("org-1", "ft:unlisted", "base-large", event_id="ev-7"),
        ],
    ),
}


@pytest.mark.parametrize("change", EVENT_CHANGES)
def test_rerate_compares_again_when_the_events_change(
    conn: psycopg.Connection,
    add_events: AddEvents,
    compared: list[str],
    database_url: str,
    change: str,
) -> None:
    before, after = EVENT_CHANGES[change]
    add_events([*EVENTS, *before])
    rate_window(conn, WINDOW, Pricebooks((DERIVING,)), "run-1")
    delete_events(database_url, [event.event_id for event in before])
    add_events(after)

    second = rate_window(conn, WINDOW, Pricebooks((DERIVING,)), "run-2")

    assert compared == ["run-1", "run-2"]
    assert second.rows_written > 0
    _assert_matches_oracle(conn, DERIVING, [*EVENTS, *after])


def test_rerate_compares_again_when_a_problem_is_renamed(
    conn: psycopg.Connection, add_events: AddEvents, compared: list[str], monkeypatch: Any
) -> None:
    add_events(EVENTS)
    rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-1")
    # A release renames a problem in code: no statement, pricebook or event changes.
    renamed = {bit: f"{name} (renamed)" for bit, name in reconcile.PROBLEM_BITS.items()}
    monkeypatch.setattr(reconcile, "PROBLEM_BITS", renamed)

    second = rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-2")

    assert compared == ["run-1", "run-2"]
    assert second.exception_counts.updated == 1
    (invalid,) = [e for e in load_window(conn, WINDOW).exceptions if e.auth_id == ""]
    assert invalid.detail.endswith("(renamed)")


def test_rerate_compares_again_when_the_checksum_rendering_changes(
    conn: psycopg.Connection, add_events: AddEvents, compared: list[str], monkeypatch: Any
) -> None:
    add_events(EVENTS)
    first = rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-1")
    checksum_headers = engine.checksum_headers

    def later_rendering(window: Window, version: PricebookVersion) -> dict[str, str]:
        return {name: f"{text}v2" for name, text in checksum_headers(window, version).items()}

    monkeypatch.setattr(engine, "checksum_headers", later_rendering)
    second = rate_window(conn, WINDOW, Pricebooks((VERSION,)), "run-2")

    # The comparison ran, and the checksum logged is this release's, not the one carried.
    assert compared == ["run-1", "run-2"]
    assert second.rows_written == 0 and second.checksum != first.checksum
