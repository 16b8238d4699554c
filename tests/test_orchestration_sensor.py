"""The late-events sensor, evaluated as the sensor daemon does, against a live database.

Windows here are recent hours (``tests.sensing``); late events are inserted with the
database's ``now()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest
from dagster._core.test_utils import create_run_for_test

from rating_pipeline.orchestration import queries
from rating_pipeline.orchestration.partitions import hourly_windows
from rating_pipeline.orchestration.queries import ChangedWindow, Ingested, LateBeyondLookback
from rating_pipeline.orchestration.resources import WarehouseResource
from rating_pipeline.orchestration.sensors import (
    DEFAULT_LOOKBACK_HOURS,
    LOOKBACK_VARIABLE,
    REPORTED_WINDOWS,
    RESCAN_OVERLAP,
    RUN_KEY_TAG,
    SENSOR_NAME_TAG,
    LateEventsCursor,
    LateEventsScan,
    SensorSettingError,
    beyond_lookback_lines,
    build_late_events_sensor,
    evaluate,
    late_windows_found,
    lookback,
    record_changed,
)
from rating_pipeline.pricebook.model import Pricebooks
from rating_pipeline.warehouse.database import WarehouseConnectionError, connect
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.warehouse.late_windows import ChangedAfterRating
from rating_pipeline.windows import HOUR, Window
from tests import sensing
from tests.conftest import database_url_for, delete_events
from tests.factories import BillingEvent, make_version, own
from tests.sensing import REPOSITORY, event, events_in, hours_ago, rate, rated_then_late

AddEvents = Callable[[Iterable[BillingEvent]], int]
SENSOR = REPOSITORY.get_sensor_def("late_events")
pytestmark = pytest.mark.usefixtures("an_hour_that_will_not_turn")


def recent_hour() -> Window:
    return hours_ago(3)


def other_hour() -> Window:
    return hours_ago(2)


def old_hour() -> Window:
    return hours_ago(DEFAULT_LOOKBACK_HOURS + 30)


def tick(
    database_url: str, instance: dg.DagsterInstance, cursor: str | None = None
) -> dg.SensorExecutionData:
    return sensing.tick(SENSOR, database_url, instance, cursor)


def test_late_events_request_exactly_the_windows_they_changed(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    add_events([*events_in(recent_hour(), 3), *events_in(other_hour(), 2)])
    rate(database_url, recent_hour(), other_hour())
    quiet = tick(database_url, instance)
    assert quiet.run_requests == [] and (quiet.skip_message or "").startswith(
        "no re-rate to request: no rated window of the lookback (from "
    )

    add_events([event(recent_hour(), 50, "late-1")])
    found = tick(database_url, instance, quiet.cursor)

    [request] = found.run_requests or []
    assert request.partition_key == recent_hour().key
    assert request.run_key is not None and request.run_key.startswith(f"{recent_hour().key}:4:")
    assert request.tags["rating/trigger"] == "late_events"


def test_the_same_late_state_keeps_the_same_run_key_and_a_new_one_changes_it(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    add_events(events_in(recent_hour(), 2))
    rate(database_url, recent_hour())
    add_events([event(recent_hour(), 40, "late-a")])

    first = tick(database_url, instance)
    again = tick(database_url, instance, first.cursor)
    add_events([event(recent_hour(), 41, "late-b")])
    more = tick(database_url, instance, again.cursor)

    keys = [[r.run_key for r in t.run_requests or []] for t in (first, again, more)]
    assert keys[0] == keys[1] and len(keys[0]) == 1
    assert keys[2] != keys[0] and keys[2][0].startswith(f"{recent_hour().key}:4:")


@pytest.mark.parametrize(
    ("status", "then"),
    [
        (dg.DagsterRunStatus.STARTED, ""),
        (dg.DagsterRunStatus.CANCELED, "; changed_events requests it again on the window's turn"),
    ],
)
def test_a_late_state_already_requested_is_said_so_never_requested_again(
    database_url: str,
    add_events: AddEvents,
    instance: dg.DagsterInstance,
    capfd: pytest.CaptureFixture[str],
    status: dg.DagsterRunStatus,
    then: str,
) -> None:
    """The daemon drops a request whose run key a run of the sensor has (a run of the
    release before too): the ticks of the rescan overlap logged "requesting a re-rate"
    each, and the skip said no window changed."""
    add_events(events_in(recent_hour(), 2))
    rate(database_url, recent_hour())
    add_events([event(recent_hour(), 40, "late-a")])
    [request] = tick(database_url, instance).run_requests or []
    assert request.run_key is not None
    launched_tags = {**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: "late_events"}
    launched = create_run_for_test(
        instance, job_name="rate_windows", tags=launched_tags, status=status
    )
    capfd.readouterr()

    again = tick(database_url, instance)

    assert again.run_requests == []
    assert "requesting a re-rate" not in capfd.readouterr().err
    assert (
        f"window {recent_hour().key}: its late events' re-rate was requested already (run "
        f"{launched.run_id[:8]}, {status.value}){then}"
    ) in (again.skip_message or "")
    # It named a window with late events: it must not open by saying there is none (found
    # by an audit with a live daemon).
    assert (again.skip_message or "").startswith(
        "no re-rate to request: every rated window of the lookback (from "
    )
    assert "no new late event" not in (again.skip_message or "")


def test_a_tick_that_requests_a_window_still_says_which_states_were_requested_already(
    database_url: str,
    add_events: AddEvents,
    instance: dg.DagsterInstance,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A run requested earlier that failed is changed_events' to request again; a tick that
    also requested another window returned no skip message, and said nothing of it. Found
    by an audit."""
    earlier_hour = Window(recent_hour().start - HOUR)
    for window in (earlier_hour, recent_hour()):
        add_events(events_in(window, 2))
        rate(database_url, window)
    add_events([event(earlier_hour, 40, "late-a")])
    [request] = tick(database_url, instance).run_requests or []
    assert request.run_key is not None
    launched_tags = {**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: "late_events"}
    launched = create_run_for_test(
        instance, job_name="rate_windows", tags=launched_tags, status=dg.DagsterRunStatus.FAILURE
    )
    add_events([event(recent_hour(), 40, "late-b")])
    capfd.readouterr()

    [again] = tick(database_url, instance).run_requests or []

    assert again.partition_key == recent_hour().key
    assert (
        f"window {earlier_hour.key}: its late events' re-rate was requested already (run "
        f"{launched.run_id[:8]}, FAILURE); changed_events requests it again"
    ) in capfd.readouterr().err


def test_a_tick_records_the_windows_beyond_the_lookback_beside_those_inside_it() -> None:
    """While a re-rate inside the lookback is pending, every tick finds that window too: a
    tick recording only one kind would leave an old changed window off late_window, and
    all_windows_billed green. Found by a mutation pass."""
    now = datetime.now(UTC)
    inside = ChangedWindow(recent_hour(), 3, now, 2, 7)
    old = hours_ago(DEFAULT_LOOKBACK_HOURS + 30)
    beyond = (
        LateBeyondLookback(old, 5, now, 4, now, 8),
        LateBeyondLookback(hours_ago(DEFAULT_LOOKBACK_HOURS + 40), 1, now, None, None),
    )
    found = LateEventsScan(now, Ingested(now - HOUR, now), now - lookback(), (inside,), beyond)

    assert late_windows_found(found) == [
        ChangedAfterRating(recent_hour(), 3, 2, 7),
        ChangedAfterRating(old, 5, 4, 8),  # the never-rated one is all_windows_billed's own
    ]


def test_a_first_tick_examines_the_whole_first_hour_of_the_lookback(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """A new deployment or a cursor reset: an event ingested late early in the lookback's
    first window, not only since the same minute of that hour, or the window leaves the
    lookback unrated within the hour. Found by a mutation pass."""
    first = Window(Window.containing(datetime.now(UTC)).start - lookback())
    add_events(events_in(first, 2, ingested_at=first.start + timedelta(seconds=1)))
    rate(database_url, first)
    add_events([event(first, 50, "late-early", ingested_at=first.start + timedelta(seconds=2))])

    data = tick(database_url, instance)

    [request] = data.run_requests or []
    assert request.partition_key == first.key
    # and hands the next tick where it stopped, as a tick without requests does
    assert LateEventsCursor.parse(data.cursor) is not None


def test_the_tags_a_request_is_matched_by_are_the_ones_the_sensor_daemon_sets() -> None:
    from dagster._core.storage import tags

    assert (RUN_KEY_TAG, SENSOR_NAME_TAG) == (tags.RUN_KEY_TAG, tags.SENSOR_NAME_TAG)


def test_rerating_the_window_settles_it(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    add_events(events_in(recent_hour(), 2))
    rate(database_url, recent_hour())
    add_events([event(recent_hour(), 40, "late-a")])
    assert tick(database_url, instance).run_requests

    rate(database_url, recent_hour())

    assert tick(database_url, instance).run_requests == []


def test_an_event_without_an_event_id_is_counted_as_the_rating_counted_it(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """Upstream's table may allow a null event_id (contract 3 assumes nothing more). The
    rating counts every row; a comparison that counted ids saw the window changed after
    every rating, and requested re-ratings that changed nothing."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "ALTER TABLE billing_event DROP CONSTRAINT billing_event_pkey, "
            "ALTER COLUMN event_id DROP NOT NULL"
        )
        conn.execute(
            "INSERT INTO billing_event (event_id, auth_id, model_id, input_tokens, "
            "output_tokens, occurred_at) VALUES (NULL, 'org-1', 'base-large', 1, 1, %s)",
            (recent_hour().start,),
        )
    add_events(events_in(recent_hour(), 2))
    rate(database_url, recent_hour())

    assert tick(database_url, instance).run_requests == []


def test_an_event_committed_late_with_an_earlier_ingested_at_is_still_found(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    add_events(events_in(recent_hour(), 2))
    rate(database_url, recent_hour())
    cursor = LateEventsCursor(datetime.now(UTC)).serialize()
    # A slow ingest transaction: stamped before the cursor, visible only after it.
    stamped = datetime.now(UTC) - RESCAN_OVERLAP / 3
    add_events([event(recent_hour(), 30, "slow-1", ingested_at=stamped)])

    found = tick(database_url, instance, cursor)

    assert [r.partition_key for r in found.run_requests or []] == [recent_hour().key]


def test_windows_older_than_the_lookback_are_reported_not_rerated(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    rated_then_late(database_url, add_events, old_hour())

    found = tick(database_url, instance)

    assert found.run_requests == []
    assert f"window {old_hour().key}: 3 events now, 2 read by its latest rating" in (
        found.skip_message or ""
    )
    assert "not rated automatically" in (found.skip_message or "")
    parsed = LateEventsCursor.parse(found.cursor)
    assert parsed is not None and parsed.beyond_lookback == (f"{old_hour().key}:3",)


def test_late_events_that_landed_during_an_outage_longer_than_the_lookback_are_reported(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """The sensor was stopped for 98 hours; 90 hours ago, an event landed in a window that
    is now older than the lookback. The first tick after the outage still reports it."""
    now = datetime.now(UTC)
    add_events(events_in(old_hour(), 2, ingested_at=old_hour().end))
    rate(database_url, old_hour())
    add_events([event(old_hour(), 40, "late-in-outage", ingested_at=now - timedelta(hours=90))])
    cursor = LateEventsCursor(now - timedelta(hours=98)).serialize()

    found = tick(database_url, instance, cursor)

    assert f"window {old_hour().key}: 3 events now, 2 read by its latest rating" in (
        found.skip_message or ""
    )


def test_ticks_after_a_long_outage_catch_up_a_bounded_span_each(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """A tick examines at most the lookback and an hour of ingestion, what a first tick
    examines: after a 300-hour outage the cursor catches up over a few ticks and every
    tick is as cheap as the first, instead of one tick timing out for ever."""
    now = datetime.now(UTC)
    add_events(events_in(old_hour(), 2, ingested_at=now - timedelta(hours=6)))
    rate(database_url, old_hour())
    add_events([event(old_hour(), 40, "late-in-outage", ingested_at=now - timedelta(hours=5))])
    cursor = LateEventsCursor(now - timedelta(hours=300)).serialize()
    span = timedelta(hours=DEFAULT_LOOKBACK_HOURS + 1)

    ticks: list[dg.SensorExecutionData] = []
    while len(ticks) < 10:
        found = tick(database_url, instance, cursor)
        ticks.append(found)
        previous = LateEventsCursor.parse(cursor)
        parsed = LateEventsCursor.parse(found.cursor)
        assert previous is not None and parsed is not None
        assert parsed.ingested_through - (previous.ingested_through - RESCAN_OVERLAP) <= span
        cursor = found.cursor
        if f"window {old_hour().key}: 3 events now" in (found.skip_message or ""):
            break

    assert 3 < len(ticks) < 10


def test_windows_older_than_the_lookback_never_rated_are_reported(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    add_events(events_in(old_hour(), 2))

    found = tick(database_url, instance)

    assert found.run_requests == []
    assert f"window {old_hour().key}: 2 events, never rated; older than the lookback" in (
        found.skip_message or ""
    )


def test_late_events_before_the_first_partition_say_how_they_can_be_rated(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """No partition holds them, so "materialize its partition" cannot be done."""
    before_first = Window(hourly_windows.start.astimezone(UTC) - 10 * HOUR)
    add_events(events_in(before_first, 2))

    message = tick(database_url, instance).skip_message or ""

    assert f"window {before_first.key}: 2 events, never rated" in message
    assert "before the first partition" in message and "rating-pipeline rate" in message
    assert "materialize its partition" not in message


def test_a_late_event_that_replaces_a_deleted_one_requests_a_rerate(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """The same count, another latest ingested_at: the window's events changed."""
    add_events(events_in(recent_hour(), 2))
    rate(database_url, recent_hour())
    add_events([event(recent_hour(), 40, "late-a")])
    delete_events(database_url, [f"{recent_hour().key}-0"])

    found = tick(database_url, instance)

    assert [r.partition_key for r in found.run_requests or []] == [recent_hour().key]


def test_the_oldest_hour_of_the_lookback_is_rerated_and_the_one_before_it_reported(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """The lookback holds as many hours as missed_hours and changed_events give it."""
    inside, outside = hours_ago(DEFAULT_LOOKBACK_HOURS), hours_ago(DEFAULT_LOOKBACK_HOURS + 1)
    add_events([*events_in(inside, 2, ingested_at=inside.end)])
    add_events([*events_in(outside, 2, ingested_at=outside.end)])
    rate(database_url, inside, outside)
    add_events([event(inside, 40, "late-in"), event(outside, 40, "late-out")])

    found = tick(database_url, instance)

    assert [r.partition_key for r in found.run_requests or []] == [inside.key]


def test_a_late_event_at_the_lookback_start_instant_is_rerated(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """The lookback's first instant is inside it: the event is neither skipped by the
    re-rating query nor left to the beyond-the-lookback report."""
    first = hours_ago(DEFAULT_LOOKBACK_HOURS)
    add_events(events_in(first, 2, ingested_at=first.start))  # before the first tick's scan
    rate(database_url, first)
    add_events([event(first, 0, "late-at-start")])

    found = tick(database_url, instance)

    assert [r.partition_key for r in found.run_requests or []] == [first.key]


def test_sensor_does_not_warn_about_late_events_already_rated(
    database_url: str,
    add_events: AddEvents,
    instance: dg.DagsterInstance,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # What `./dev demo` leaves: an old window, rated, then late events, then rated again.
    rated_then_late(database_url, add_events, old_hour())
    reported = tick(database_url, instance)
    assert old_hour().key in (reported.skip_message or "")
    assert old_hour().key in capfd.readouterr().err
    rate(database_url, old_hour())

    # The next tick of the same sensor, and a first tick (a fresh instance, as `./dev ui`).
    for after in (tick(database_url, instance, reported.cursor), tick(database_url, instance)):
        assert after.run_requests == []
        assert old_hour().key not in (after.skip_message or "")
        parsed = LateEventsCursor.parse(after.cursor)
        assert parsed is not None and parsed.beyond_lookback == ()
    assert old_hour().key not in capfd.readouterr().err  # the tick's log: no WARNING about it


def test_a_tick_warns_of_each_reported_window_and_of_how_many_more_once(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Past REPORTED_WINDOWS windows beyond the lookback, one line says how many more."""
    now = datetime.now(UTC)
    beyond = tuple(
        LateBeyondLookback(hours_ago(DEFAULT_LOOKBACK_HOURS + 2 + k), 3, now, 2, now, k)
        for k in range(REPORTED_WINDOWS + 2)
    )
    found = LateEventsScan(now, Ingested(now - HOUR, now), now - lookback(), (), beyond)

    evaluate(dg.build_sensor_context(), found)

    err = capfd.readouterr().err
    assert err.count("3 events now, 2 read by its latest rating") == REPORTED_WINDOWS, err
    assert err.count("... and 2 more windows") == 1, err


def test_windows_never_rated_are_left_to_the_schedule(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    add_events(events_in(recent_hour(), 2))

    assert tick(database_url, instance).run_requests == []


def test_an_unreachable_database_is_an_error_not_a_skip(
    pg_server_url: str, instance: dg.DagsterInstance
) -> None:
    missing = database_url_for(pg_server_url, "rating_test_no_such_database")

    with pytest.raises(WarehouseConnectionError, match="cannot connect to the warehouse"):
        tick(missing, instance)


def test_a_database_without_the_tables_is_an_error_not_a_skip(
    empty_database_url: str, instance: dg.DagsterInstance
) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable):
        tick(empty_database_url, instance)


def test_a_cursor_instant_without_an_offset_is_unreadable_not_read_in_the_local_zone() -> None:
    """A cursor typed by hand without its offset names no instant: read in the daemon's
    zone, it would skip or rescan hours of ingestion. Found by a review."""
    aware = '{"ingested_through": "2026-06-15T10:00:00+00:00"}'
    assert LateEventsCursor.parse(aware) == LateEventsCursor(datetime(2026, 6, 15, 10, tzinfo=UTC))
    with pytest.raises(SensorSettingError, match="unreadable cursor"):
        LateEventsCursor.parse('{"ingested_through": "2026-06-15T10:00:00"}')


def test_lookback_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOKBACK_VARIABLE, "24")
    assert lookback() == timedelta(hours=24)
    with pytest.raises(SensorSettingError, match=LOOKBACK_VARIABLE):
        lookback("0")


@pytest.mark.parametrize("hours", ["87601", "99999999999"])
def test_a_lookback_reaching_back_past_any_window_is_a_setting_error_naming_it(
    hours: str,
) -> None:
    """Ten years of hours at most: no one means a longer one, and far longer ones failed
    the daemon on a bare OverflowError that named no setting. Found by a review."""
    assert lookback("87600") == timedelta(hours=87600)
    with pytest.raises(SensorSettingError, match=f"{LOOKBACK_VARIABLE}='{hours}'.*87600 or less"):
        lookback(hours)


LATE_WINDOW_ROWS = "SELECT window_start, events_now, log_id FROM late_window"


def test_a_record_against_an_older_rating_never_replaces_one_against_a_newer(
    database_url: str,
) -> None:
    """Two sensors' ticks interleave around a rating's commit: the one that read before it
    records against the older rating, after the other recorded against the newer. The
    newer finding stands; taking the older, all_windows_billed would see a rating read
    since and drop a window still changed. Found by a review of the sensors."""
    window, warehouse = hours_ago(80), WarehouseResource(database_url=database_url)
    found_at = datetime.now(UTC)
    record_changed(warehouse, [ChangedAfterRating(window, 7, 6, 11)], found_at)
    record_changed(warehouse, [ChangedAfterRating(window, 6, 5, 10)], found_at)
    with psycopg.connect(database_url) as conn:
        assert conn.execute(LATE_WINDOW_ROWS).fetchall() == [(window.start, 7, 11)]
    record_changed(warehouse, [ChangedAfterRating(window, 8, 7, 12)], found_at)
    with psycopg.connect(database_url) as conn:
        assert conn.execute(LATE_WINDOW_ROWS).fetchall() == [(window.start, 8, 12)]


def test_a_late_window_before_the_first_partition_is_reported_never_requested(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """With a lookback reaching before the first partition (allowed up to ten years), a
    window rated there (by `rating-pipeline rate`) that receives a late event has no
    partition to run: the tick must not request one (Dagster would refuse the whole tick),
    and must not pass over it in silence either: it is older than the lookback
    (partitions.lookback_start), reported with `rating-pipeline rate` as the way out."""
    before_first = Window(hourly_windows.start.astimezone(UTC) - 10 * HOUR)
    books = Pricebooks(
        (make_version({"base-large": own("2.50", "10")}, effective_from=before_first.start),)
    )
    add_events(sensing.events_in(before_first, 2, ingested_at=before_first.end))
    with connect(database_url) as conn:
        rate_window(conn, before_first, books, "by-hand")
    add_events([sensing.event(before_first, 40, "late", model_id="base-large")])
    sensor = build_late_events_sensor(timedelta(hours=87_600))

    found = sensing.tick(sensor, database_url, instance)

    assert sensing.requested(found) == []
    message = found.skip_message or ""
    assert f"window {before_first.key}: 3 events now, 2 read by its latest rating" in message
    assert "before the first partition" in message and "rating-pipeline rate" in message


def test_a_late_state_requested_twice_is_told_by_its_newest_run(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """A failed re-rate run re-executed (its tags kept) and succeeding: the tick tells the
    operator the newest run's status, not that the state failed and will be requested
    again (mutant S7: the oldest run wins)."""
    add_events(events_in(recent_hour(), 2))
    rate(database_url, recent_hour())
    add_events([event(recent_hour(), 40, "late-a")])
    [request] = tick(database_url, instance).run_requests or []
    assert request.run_key is not None
    tags = {**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: "late_events"}
    create_run_for_test(
        instance, job_name="rate_windows", tags=tags, status=dg.DagsterRunStatus.FAILURE
    )
    newest = create_run_for_test(
        instance, job_name="rate_windows", tags=tags, status=dg.DagsterRunStatus.SUCCESS
    )

    again = tick(database_url, instance)

    assert f"(run {newest.run_id[:8]}, SUCCESS)" in (again.skip_message or "")
    assert "requests it again" not in (again.skip_message or "")


def test_a_window_beyond_the_lookback_is_warned_of_once_not_at_every_tick(
    database_url: str,
    add_events: AddEvents,
    instance: dg.DagsterInstance,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The rescan overlap shows a late window beyond the lookback to several ticks: the
    WARNING is logged by the first only; the skip message still lists it (mutant S6)."""
    add_events(events_in(old_hour(), 2))
    first = tick(database_url, instance)
    assert f"window {old_hour().key}" in capfd.readouterr().err

    second = tick(database_url, instance, first.cursor)

    assert f"window {old_hour().key}" not in capfd.readouterr().err
    assert f"window {old_hour().key}: 2 events, never rated" in (second.skip_message or "")


def test_a_late_window_at_the_first_partition_is_told_to_materialize_its_partition() -> None:
    """The first partition's window is a partition: the operator is told to materialize it,
    not to rate it by hand as if it were before the first partition (mutant S8)."""
    first = Window(hourly_windows.start.astimezone(UTC))
    late = queries.LateBeyondLookback(first, 3, None, 2, first.end, 1)
    found = LateEventsScan(
        first.end, queries.Ingested(first.end, first.end), first.end, (), (late,)
    )

    [line] = beyond_lookback_lines(found)

    assert "materialize its partition to bill them" in line
    assert "before the first partition" not in line


def test_a_non_numeric_sensor_setting_is_refused_not_replaced_by_its_default() -> None:
    """RATING_LATE_EVENT_LOOKBACK_HOURS="72h" is a mistake the operator must hear of, not a
    silent 72 (mutant S9: any unparsable text becomes the default)."""
    with pytest.raises(SensorSettingError, match="expected whole hours"):
        lookback("96h")


def test_every_reported_window_beyond_the_lookback_is_warned_of_once(
    database_url: str,
    add_events: AddEvents,
    instance: dg.DagsterInstance,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The cursor carries every reported window, so the next tick of the rescan overlap
    warns of none of them again (mutant S10: the cursor keeps the first only)."""
    older = hours_ago(DEFAULT_LOOKBACK_HOURS + 40)
    add_events([*events_in(old_hour(), 2), *events_in(older, 2)])
    first = tick(database_url, instance)
    assert f"window {older.key}" in capfd.readouterr().err

    tick(database_url, instance, first.cursor)

    err = capfd.readouterr().err
    assert f"window {older.key}" not in err and f"window {old_hour().key}" not in err
