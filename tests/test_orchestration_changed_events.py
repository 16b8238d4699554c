"""The changed-events sensor: deletions and in-place corrections in rated windows are re-rated.

Neither leaves a new ``ingested_at``, so the late-events sensor cannot see them; this one
recomputes rated windows' events digests in rotation, as the daemon would tick it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from datetime import UTC, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG
from dagster._core.test_utils import create_run_for_test

from rating_pipeline.orchestration import changed_events, checks
from rating_pipeline.orchestration.assets import pricebook, rated_usage, window_usage
from rating_pipeline.orchestration.changed_events import (
    DEFAULT_INTERVAL_MINUTES,
    INTERVAL_VARIABLE,
    MAX_ATTEMPTS,
    MAX_WINDOWS_PER_TICK,
    Cursor,
    build_changed_events_sensor,
    interval,
    windows_per_tick,
)
from rating_pipeline.orchestration.jobs import JOB_NAME
from rating_pipeline.orchestration.missed_hours import PARTITION_TAG
from rating_pipeline.orchestration.partitions import hourly_windows
from rating_pipeline.orchestration.queries import LatestRating
from rating_pipeline.orchestration.resources import PricebookResource, WarehouseResource
from rating_pipeline.orchestration.sensors import (
    DEFAULT_LOOKBACK_HOURS,
    LOOKBACK_VARIABLE,
    MINIMUM_INTERVAL_SECONDS,
    SensorSettingError,
)
from rating_pipeline.pricebook.loader import load_pricebooks
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.windows import HOUR, Window
from tests.conftest import clear_of_an_hours_end, delete_events
from tests.factories import BillingEvent
from tests.sensing import (
    PRICEBOOK_DIR,
    REPOSITORY,
    current_window,
    events_in,
    hours_ago,
    rate,
    requested,
    tick,
)

AddEvents = Callable[[Iterable[BillingEvent]], int]
SENSOR = REPOSITORY.get_sensor_def("changed_events")
pytestmark = pytest.mark.usefixtures("an_hour_that_will_not_turn")
LOOKBACK = timedelta(hours=DEFAULT_LOOKBACK_HOURS)
CORRECT_IN_PLACE = "UPDATE billing_event SET input_tokens = input_tokens + 1 WHERE event_id = %s"
REVERT_CORRECTION = "UPDATE billing_event SET input_tokens = input_tokens - 1 WHERE event_id = %s"


def correct(database_url: str, statement: str, event_id: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(statement, (event_id,))


def all_windows_billed(
    database_url: str, instance: dg.DagsterInstance, pricebook_dir: Path = PRICEBOOK_DIR
) -> dg.AssetCheckEvaluation:
    """The all_windows_billed check, executed on its own."""
    result = dg.materialize(
        [pricebook, window_usage, rated_usage, *checks.RATED_USAGE_CHECKS],
        selection=dg.AssetSelection.checks(checks.all_windows_billed),
        resources={
            "warehouse": WarehouseResource(database_url=database_url),
            "pricebooks": PricebookResource(directory=str(pricebook_dir)),
        },
        instance=instance,
    )
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_an_event_deleted_from_a_rated_window_requests_its_rerate(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    window = hours_ago(3)
    add_events(events_in(window, 3))
    rate(database_url, window)
    delete_events(database_url, [f"{window.key}-1"])

    [request] = tick(SENSOR, database_url, instance).run_requests or []

    assert request.partition_key == window.key
    assert request.tags["rating/trigger"] == "changed_events"


def test_an_event_corrected_in_place_requests_its_rerate(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    window = hours_ago(3)
    add_events(events_in(window, 3))
    rate(database_url, window)
    with psycopg.connect(database_url) as conn:
        conn.execute(CORRECT_IN_PLACE, (f"{window.key}-1",))

    assert requested(tick(SENSOR, database_url, instance)) == [window.key]


def test_windows_whose_events_did_not_change_are_not_rerated(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    windows = (hours_ago(3), hours_ago(2))
    for window in windows:
        add_events(events_in(window, 2))
    rate(database_url, *windows)

    quiet = tick(SENSOR, database_url, instance)

    assert quiet.run_requests == []
    assert all(window.key in (quiet.skip_message or "") for window in windows)
    # nor recorded: a close would name each as changed, and all_windows_billed digest it
    # again at every evaluation (found by a mutation pass)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM late_window").fetchone() == (0,)


def test_a_window_whose_latest_rating_logged_no_digest_is_rerated_once(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """A rating logged before revision 0006 has no events digest: nothing says what it
    read, so the window is re-rated, and its new rating's digest settles it."""
    window = hours_ago(3)
    add_events(events_in(window, 2))
    rate(database_url, window)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE rating_log SET events_digest = NULL")

    first = tick(SENSOR, database_url, instance)
    rate(database_url, window)
    settled = tick(SENSOR, database_url, instance, first.cursor)

    assert requested(first) == [window.key]
    assert settled.run_requests == []


def test_a_changed_state_is_requested_once_until_a_rating_settles_it(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    window = hours_ago(3)
    add_events(events_in(window, 4))
    rate(database_url, window)
    delete_events(database_url, [f"{window.key}-1"])

    first = tick(SENSOR, database_url, instance)
    again = tick(SENSOR, database_url, instance, first.cursor)
    rate(database_url, window)
    settled = tick(SENSOR, database_url, instance, again.cursor)
    delete_events(database_url, [f"{window.key}-2"])
    changed_again = tick(SENSOR, database_url, instance, settled.cursor)

    keys = [[r.run_key for r in t.run_requests or []] for t in (first, again, changed_again)]
    assert keys[0] == keys[1] and len(keys[0]) == 1
    assert settled.run_requests == []
    assert len(keys[2]) == 1 and keys[2] != keys[0]


def launched(
    instance: dg.DagsterInstance, request: dg.RunRequest, status: dg.DagsterRunStatus
) -> None:
    """The run the sensor daemon would have launched for ``request``, as the instance keeps
    it (the daemon skips a request whose run key a kept run already has, whatever its end)."""
    tags = {
        **request.tags,
        RUN_KEY_TAG: request.run_key or "",
        SENSOR_NAME_TAG: SENSOR.name,
        PARTITION_TAG: request.partition_key or "",
    }
    create_run_for_test(instance, job_name=JOB_NAME, tags=tags, status=status)


def new_keys(instance: dg.DagsterInstance, data: dg.SensorExecutionData) -> list[str]:
    """The partitions of the tick's requests whose run keys no kept run has: what the daemon
    would launch."""
    return [
        request.partition_key or ""
        for request in data.run_requests or []
        if not instance.get_runs(dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key or ""}))
    ]


def test_a_failed_rerate_is_requested_again_on_a_later_tick_a_bounded_number_of_times(
    database_url: str,
    add_events: AddEvents,
    instance: dg.DagsterInstance,
    capfd: pytest.CaptureFixture[str],
) -> None:
    window = hours_ago(3)
    add_events(events_in(window, 3))
    rate(database_url, window)
    delete_events(database_url, [f"{window.key}-1"])

    cursor, launches = None, 0
    while True:
        data = tick(SENSOR, database_url, instance, cursor)
        cursor = data.cursor
        if not new_keys(instance, data):
            break
        [request] = data.run_requests or []
        launched(instance, request, dg.DagsterRunStatus.FAILURE)  # the rating failed
        launches += 1
        assert launches <= MAX_ATTEMPTS

    assert launches == MAX_ATTEMPTS
    given_up = f"{window.key}: events changed, {MAX_ATTEMPTS} re-rates of it ended and left"
    assert given_up in (data.skip_message or "")
    assert f"WARNING - {given_up}" in capfd.readouterr().err  # the tick's log says it too


def test_a_canceled_rerate_is_requested_again_as_the_next_attempt(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """An operator who terminates a re-rate (docs/operations.md) hands the window back to
    the sensor: the same run key again would be skipped by the daemon, and the window would
    bill the deleted event until its events changed again."""
    window = hours_ago(3)
    add_events(events_in(window, 3))
    rate(database_url, window)
    delete_events(database_url, [f"{window.key}-1"])
    first = tick(SENSOR, database_url, instance)
    [request] = first.run_requests or []
    launched(instance, request, dg.DagsterRunStatus.CANCELED)

    again = tick(SENSOR, database_url, instance)

    assert new_keys(instance, again) == [window.key]
    [retry] = again.run_requests or []
    assert retry.run_key == (request.run_key or "").removesuffix(":1") + ":2"


def test_a_state_seen_again_after_its_rerate_succeeded_is_requested_as_the_next_attempt(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """A warehouse restored from a backup taken before a re-rate committed, its correction
    replayed: the same state as the one the (kept) Dagster instance ran successfully. The
    same run key again was skipped by the daemon on every tick, and the window billed the
    old numbers. Found by an audit of backup and restore."""
    window = hours_ago(3)
    add_events(events_in(window, 3))
    rate(database_url, window)
    delete_events(database_url, [f"{window.key}-1"])
    [request] = tick(SENSOR, database_url, instance).run_requests or []
    launched(instance, request, dg.DagsterRunStatus.SUCCESS)  # its rating since lost

    again = tick(SENSOR, database_url, instance)

    assert new_keys(instance, again) == [window.key]
    [retry] = again.run_requests or []
    assert retry.run_key == (request.run_key or "").removesuffix(":1") + ":2"


@pytest.mark.parametrize("rerated_first", [True, False], ids=["rerated", "not-rerated"])
def test_a_new_change_after_an_earlier_state_was_given_up_is_requested_again_as_attempt_1(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance, rerated_first: bool
) -> None:
    """Giving up is per state, and the digest now is part of it: once the operator fixed
    the cause (and re-rated, or not), the next deletion is a new state, billed again."""
    window = hours_ago(3)
    add_events(events_in(window, 4))
    rate(database_url, window)
    delete_events(database_url, [f"{window.key}-1"])
    for _ in range(MAX_ATTEMPTS):
        [request] = tick(SENSOR, database_url, instance).run_requests or []
        launched(instance, request, dg.DagsterRunStatus.FAILURE)
    assert tick(SENSOR, database_url, instance).run_requests == []
    if rerated_first:
        rate(database_url, window)
    delete_events(database_url, [f"{window.key}-2"])

    again = tick(SENSOR, database_url, instance)

    assert new_keys(instance, again) == [window.key]
    [request] = again.run_requests or []
    assert (request.run_key or "").endswith(":1")


def test_a_correction_reverted_then_made_again_is_rerated_each_time(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """The window's digest returns to one it had before, at a later rating: the state is
    keyed by that rating too, or the daemon would skip the run key of the first time and
    the window would bill the reverted numbers. Four times over: counted by digest alone,
    the earlier re-rates of a state would use up its attempts (found by a mutation pass)."""
    window = hours_ago(3)
    add_events(events_in(window, 3))
    rate(database_url, window)

    for statement in [CORRECT_IN_PLACE, REVERT_CORRECTION] * 3 + [CORRECT_IN_PLACE]:
        correct(database_url, statement, f"{window.key}-1")
        data = tick(SENSOR, database_url, instance)
        assert new_keys(instance, data) == [window.key], statement
        [request] = data.run_requests or []
        launched(instance, request, dg.DagsterRunStatus.SUCCESS)
        rate(database_url, window)  # what the run did


def test_changed_events_never_rerates_a_window_older_than_the_lookback(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """An older window may be invoiced: a re-rate would make adjustments nobody asked for."""
    old, recent = hours_ago(DEFAULT_LOOKBACK_HOURS + 30), hours_ago(3)
    add_events([*events_in(old, 3), *events_in(recent, 2)])
    rate(database_url, old, recent)
    delete_events(database_url, [f"{old.key}-1"])

    cursor = None
    for _ in range(3):
        data = tick(SENSOR, database_url, instance, cursor)
        cursor = data.cursor
        assert data.run_requests == []
        assert old.key not in (data.skip_message or "")


def test_the_window_at_the_lookbacks_start_is_rerated_and_the_one_before_it_is_not(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """The lookback is the same hours for every sensor: its first window is re-rated, the
    one before it may be invoiced, and all_windows_billed reports it instead."""
    current = Window.containing(clear_of_an_hours_end())
    first = Window(current.start - LOOKBACK)
    before = Window(first.start - HOUR)
    add_events([*events_in(first, 2), *events_in(before, 2)])
    rate(database_url, first, before)
    delete_events(database_url, [f"{first.key}-0", f"{before.key}-0"])

    data = tick(SENSOR, database_url, instance)  # 3 windows a tick: it checks every one

    assert requested(data) == [first.key]


def test_a_tick_with_no_rated_window_in_the_lookback_says_so(
    database_url: str, instance: dg.DagsterInstance
) -> None:
    data = tick(SENSOR, database_url, instance)

    assert data.run_requests == []
    assert "none rated in the lookback" in (data.skip_message or "")


def test_a_changed_window_whose_rerate_is_in_flight_is_not_requested_again(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    window = hours_ago(3)
    add_events(events_in(window, 3))
    rate(database_url, window)
    delete_events(database_url, [f"{window.key}-1"])
    [request] = tick(SENSOR, database_url, instance).run_requests or []
    launched(instance, request, dg.DagsterRunStatus.FAILURE)
    retry = dg.RunRequest(run_key="a retry of it", partition_key=window.key, tags=request.tags)
    launched(instance, retry, dg.DagsterRunStatus.STARTED)  # Dagster's retry of a dead run

    assert tick(SENSOR, database_url, instance).run_requests == []


def test_every_rated_window_of_the_lookback_is_checked_within_half_the_interval(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    # 4 windows, ticks 1 minute apart, an interval of 4 minutes: 2 windows a tick.
    sensor = build_changed_events_sensor(timedelta(hours=4), timedelta(minutes=4))
    windows = [hours_ago(h) for h in (4, 3, 2, 1)]
    for window in windows:
        add_events(events_in(window, 2))
    rate(database_url, *windows)
    delete_events(database_url, [f"{window.key}-0" for window in windows])

    first = tick(sensor, database_url, instance)
    second = tick(sensor, database_url, instance, first.cursor)
    third = tick(sensor, database_url, instance, second.cursor)

    assert requested(first) == [w.key for w in windows[:2]]
    assert requested(second) == [w.key for w in windows[2:]]
    assert requested(third) == requested(first)  # the rotation starts over


def test_a_deleted_event_is_rebilled_within_the_interval(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    # Every window of the default lookback rated; an event deleted from the window the first
    # tick has just checked: the worst case, a whole rotation away.
    windows = [hours_ago(h) for h in range(DEFAULT_LOOKBACK_HOURS, 0, -1)]
    for window in windows:
        add_events(events_in(window, 2))
    rate(database_url, *windows)
    first = tick(SENSOR, database_url, instance)
    assert first.run_requests == []
    delete_events(database_url, [f"{windows[0].key}-0"])

    requests: list[dg.RunRequest]
    cursor, ticks, requests = first.cursor, 0, []
    while not requests and ticks < 100:
        data = tick(SENSOR, database_url, instance, cursor)
        cursor, ticks, requests = data.cursor, ticks + 1, data.run_requests or []
    result = dg.materialize(
        [pricebook, window_usage, rated_usage],
        partition_key=requests[0].partition_key,
        resources={
            "warehouse": WarehouseResource(database_url=database_url),
            "pricebooks": PricebookResource(directory=str(PRICEBOOK_DIR)),
        },
        instance=instance,
    )

    assert requests[0].partition_key == windows[0].key
    budget = timedelta(minutes=DEFAULT_INTERVAL_MINUTES) / 2
    assert ticks * timedelta(seconds=MINIMUM_INTERVAL_SECONDS) <= budget
    assert result.success
    [rating] = result.asset_materializations_for_node("rated_usage")
    assert rating.metadata["events_read"] == dg.IntMetadataValue(1)


def test_the_interval_comes_from_the_environment_and_fits_the_tick_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(INTERVAL_VARIABLE, raising=False)
    assert interval() == timedelta(minutes=DEFAULT_INTERVAL_MINUTES)
    monkeypatch.setenv(INTERVAL_VARIABLE, "90")
    assert interval() == timedelta(minutes=90)
    for bad in ("0", "-5", "an hour"):
        with pytest.raises(SensorSettingError, match=INTERVAL_VARIABLE):
            interval(bad)
    assert windows_per_tick(LOOKBACK, timedelta(minutes=60)) == 3
    # 12 ticks in half of 24 minutes: the most a tick may check is allowed, one more is not.
    lookback = MAX_WINDOWS_PER_TICK * 12 * HOUR
    assert windows_per_tick(lookback, timedelta(minutes=24)) == MAX_WINDOWS_PER_TICK
    for within in (timedelta(minutes=22), timedelta(minutes=1)):  # 11 ticks; none at all
        with pytest.raises(SensorSettingError, match="windows per tick"):
            windows_per_tick(lookback, within)
    with pytest.raises(SensorSettingError, match="windows per tick"):
        windows_per_tick(LOOKBACK, timedelta(minutes=10))


NEW_VERSION = """\
version: "{version}"
effective_from: "{effective_from}"
currency: USD
models:
  base-large:
    input_per_mtok: "2.50"
    output_per_mtok: "10.00"
    long_context_above_tokens: 500
    long_context: {{input_per_mtok: "5.00", output_per_mtok: "15.00"}}
"""


def test_a_new_pricebook_version_alone_does_not_rerate_a_window(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    # A version that would classify the window's 1,000-token prompts as long context: the
    # digest is recomputed with the version the window was rated with, so nothing changed.
    window = hours_ago(3)
    add_events(events_in(window, 3))
    rate(database_url, window)
    for shipped in PRICEBOOK_DIR.glob("*.yaml"):
        shutil.copy(shipped, tmp_path)
    effective = hours_ago(5).start.strftime("%Y-%m-%dT%H:%M:%SZ")
    (tmp_path / "later.yaml").write_text(
        NEW_VERSION.format(version="later", effective_from=effective)
    )

    data = tick(SENSOR, database_url, instance, pricebook_dir=tmp_path)

    assert data.run_requests == []


def test_a_window_rated_with_a_version_since_removed_is_checked_with_the_one_rating_it_now(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """docs/operations.md: a pricebook version removed from the directory leaves its
    windows checked, with the version that would rate them now."""
    window = hours_ago(3)
    add_events(events_in(window, 3))
    rate(database_url, window)
    versions = sorted(PRICEBOOK_DIR.glob("*.yaml"))
    assert len(versions) > 1  # the window was rated with the latest, which goes
    shutil.copy(versions[0], tmp_path)
    delete_events(database_url, [f"{window.key}-1"])

    data = tick(SENSOR, database_url, instance, pricebook_dir=tmp_path)

    assert requested(data) == [window.key]


PLAIN_VERSION = """\
version: "{version}"
effective_from: "{effective_from}"
currency: USD
models:
  base-large: {{input_per_mtok: "2.50", output_per_mtok: "10.00"}}
"""


def only_a_later_version(directory: Path, effective: Window) -> Path:
    """A pricebook directory whose one version takes effect at ``effective``: the windows
    before it were rated with versions since removed, and none covers them now."""
    effective_from = effective.start.strftime("%Y-%m-%dT%H:%M:%SZ")
    (directory / "later.yaml").write_text(
        PLAIN_VERSION.format(version="later", effective_from=effective_from)
    )
    return directory


def test_a_window_no_pricebook_covers_any_more_never_stops_the_checks_of_the_others(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """Its digest cannot be recomputed, nor the window re-rated (priced_by_current_pricebooks
    asks for the version back): the tick says so and goes on. Found by an audit."""
    uncovered, covered = hours_ago(6), hours_ago(3)
    add_events([*events_in(uncovered, 2), *events_in(covered, 3)])
    rate(database_url, uncovered, covered)
    delete_events(database_url, [f"{covered.key}-1"])
    books = only_a_later_version(tmp_path, hours_ago(5))

    data = tick(SENSOR, database_url, instance, pricebook_dir=books)

    assert requested(data) == [covered.key]
    rate(database_url, covered)  # the re-rate commits: nothing left to request
    quiet = tick(SENSOR, database_url, instance, pricebook_dir=books)
    assert f"{uncovered.key}: no pricebook version covers it any more" in (quiet.skip_message or "")


def test_a_window_no_pricebook_covers_is_recorded_so_a_change_meanwhile_is_listed_once_back(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """Unchecked while no version covers it, it may leave the lookback so, and no tick
    checks it again: recorded when met, it is listed by all_windows_billed, which tells its
    events apart once the version is back. Found by a second reading."""
    window = hours_ago(6)
    add_events(events_in(window, 3))
    rate(database_url, window)
    delete_events(database_url, [f"{window.key}-1"])
    tick(SENSOR, database_url, instance, pricebook_dir=only_a_later_version(tmp_path, hours_ago(5)))
    with psycopg.connect(database_url) as conn:  # the interval passes; no re-rate commits
        conn.execute("UPDATE late_window SET found_at = found_at - interval '61 minutes'")

    billed = all_windows_billed(database_url, instance)  # the version is back

    assert not billed.passed
    assert "2 events now, 3 read by its latest rating" in str(billed.metadata)


def test_a_recorded_window_no_pricebook_covers_any_more_stays_listed_by_all_windows_billed(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """Found corrected in place, then its version removed: whether its events still differ
    cannot be told without one, so it stays listed, saying why, and the check still runs."""
    window = hours_ago(6)
    add_events(events_in(window, 2))
    rate(database_url, window)
    correct(database_url, CORRECT_IN_PLACE, f"{window.key}-0")
    assert requested(tick(SENSOR, database_url, instance)) == [window.key]  # and recorded
    with psycopg.connect(database_url) as conn:  # the interval passes; no re-rate commits
        conn.execute("UPDATE late_window SET found_at = found_at - interval '61 minutes'")

    billed = all_windows_billed(
        database_url, instance, only_a_later_version(tmp_path, hours_ago(5))
    )

    assert not billed.passed
    assert "no pricebook version covers it any more" in str(billed.metadata)


def test_a_window_corrected_just_before_it_left_the_lookback_is_listed_by_all_windows_billed(
    database_url: str,
    add_events: AddEvents,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every window leaves the lookback once more checked: a correction made after the
    rotation's last pass over it (the oldest window, just before its hour turns) would be
    neither re-rated nor reported. Found by a review of the sensors."""
    sensor = build_changed_events_sensor(timedelta(hours=4), timedelta(minutes=4))  # 2 a tick
    monkeypatch.setenv(LOOKBACK_VARIABLE, "4")
    clock = [current_window().end - timedelta(minutes=10)]
    for module in (changed_events, checks):
        monkeypatch.setattr(module, "database_clock", lambda conn: clock[0])
    windows = [hours_ago(h) for h in (4, 3, 2, 1)]
    for window in windows:
        add_events(events_in(window, 2, ingested_at=window.end))
    rate(database_url, *windows)
    first = tick(sensor, database_url, instance)
    assert first.run_requests == []  # it checked the two oldest, unchanged
    correct(database_url, CORRECT_IN_PLACE, f"{windows[0].key}-0")

    clock[0] = current_window().end + timedelta(minutes=5)  # the oldest has left the lookback
    second = tick(sensor, database_url, instance, first.cursor)

    assert second.run_requests == []  # a window older than the lookback is not re-rated
    assert windows[0].key in (second.skip_message or "")
    billed = all_windows_billed(database_url, instance)
    assert not billed.passed and windows[0].key in str(billed.metadata)


MAKE_INPUT_NUMERIC = "ALTER TABLE billing_event ALTER COLUMN input_tokens TYPE numeric(20, 0)"
CORRECT_TO_NAN = "UPDATE billing_event SET input_tokens = 'NaN' WHERE event_id = %s"


def test_a_nan_count_in_one_rated_window_never_stops_the_checks_of_the_others(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """A numeric(p, 0) count corrected to 'NaN' changes its window (the event is now an
    invalid_event): its re-rate is requested, and the windows after it in the rotation are
    still checked. Before, every tick raised on it, for good. Found by a review of what
    goes unbilled around the rating."""
    with psycopg.connect(database_url) as conn:
        conn.execute(MAKE_INPUT_NUMERIC)
    poisoned, deleted = hours_ago(3), hours_ago(2)
    for window in (poisoned, deleted):
        add_events(events_in(window, 2))
    rate(database_url, poisoned, deleted)
    correct(database_url, CORRECT_TO_NAN, f"{poisoned.key}-0")
    delete_events(database_url, [f"{deleted.key}-0"])

    data = tick(SENSOR, database_url, instance)

    assert requested(data) == [poisoned.key, deleted.key]
    billed = all_windows_billed(database_url, instance)
    assert billed.passed  # both are in the lookback: the sensor re-rates them


def test_a_window_rerated_after_a_count_turned_nan_is_not_requested_again(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """The re-rate a 'NaN' correction asks for bills the window, the event excepted, and
    logs the digest every later check reads: no tick asks again. Before, no rating could
    read the window, and every turn of the rotation asked for a re-rate that failed."""
    with psycopg.connect(database_url) as conn:
        conn.execute(MAKE_INPUT_NUMERIC)
    window = hours_ago(3)
    add_events(events_in(window, 2))
    rate(database_url, window)
    correct(database_url, CORRECT_TO_NAN, f"{window.key}-0")
    assert requested(tick(SENSOR, database_url, instance)) == [window.key]

    rate(database_url, window)  # what the requested run does

    assert requested(tick(SENSOR, database_url, instance)) == []
    assert all_windows_billed(database_url, instance).passed


def test_a_window_that_left_the_lookback_holding_a_nan_count_is_listed_as_unbilled(
    database_url: str,
    add_events: AddEvents,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sensor = build_changed_events_sensor(timedelta(hours=4), timedelta(minutes=4))  # 2 a tick
    monkeypatch.setenv(LOOKBACK_VARIABLE, "4")
    clock = [current_window().end - timedelta(minutes=10)]
    for module in (changed_events, checks):
        monkeypatch.setattr(module, "database_clock", lambda conn: clock[0])
    with psycopg.connect(database_url) as conn:
        conn.execute(MAKE_INPUT_NUMERIC)
    windows = [hours_ago(h) for h in (4, 3, 2, 1)]
    for window in windows:
        add_events(events_in(window, 2, ingested_at=window.end))
    rate(database_url, *windows)
    first = tick(sensor, database_url, instance)
    correct(database_url, CORRECT_TO_NAN, f"{windows[0].key}-0")

    clock[0] = current_window().end + timedelta(minutes=5)  # the oldest has left the lookback
    second = tick(sensor, database_url, instance, first.cursor)

    assert second.run_requests == [] and windows[0].key in (second.skip_message or "")
    billed = all_windows_billed(database_url, instance)
    assert not billed.passed and windows[0].key in str(billed.metadata)


def test_the_cursor_round_trips_and_reads_its_older_form() -> None:
    """A sensor upgraded in place keeps its rotation: its old cursor was the last window."""
    after, leaving_from = hours_ago(3).start, hours_ago(5).start
    assert Cursor.parse(Cursor(after, leaving_from).serialized()) == Cursor(after, leaving_from)
    assert Cursor.parse(Cursor().serialized()) == Cursor()
    assert Cursor.parse(after.isoformat()) == Cursor(after, None)
    assert Cursor.parse(None) == Cursor.parse("") == Cursor()
    for unreadable in ("yesterday", '{"after": 3}', '{"leaving_from": null}'):
        with pytest.raises(SensorSettingError, match="unreadable cursor"):
            Cursor.parse(unreadable)


def test_a_cursor_instant_without_an_offset_is_unreadable_not_read_in_the_local_zone() -> None:
    """A cursor typed by hand without its offset names no instant: read in the daemon's
    zone, it would skip or repeat hours of the rotation. Found by a review."""
    for unreadable in ("2026-06-15T10:00", '{"after": "2026-06-15T10:00", "leaving_from": null}'):
        with pytest.raises(SensorSettingError, match="unreadable cursor"):
            Cursor.parse(unreadable)


def test_windows_that_left_the_lookback_while_the_sensor_was_stopped_are_each_checked_once(
    database_url: str,
    add_events: AddEvents,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five windows left while it was stopped, two checked a tick: the leaving windows'
    cursor goes on where it stopped, and every changed one is recorded once."""
    sensor = build_changed_events_sensor(timedelta(hours=4), timedelta(minutes=4))  # 2 a tick
    clock = [current_window().start - 5 * HOUR + timedelta(minutes=10)]
    monkeypatch.setattr(changed_events, "database_clock", lambda conn: clock[0])
    windows = [hours_ago(h) for h in range(9, 4, -1)]  # in the lookback at the first tick
    for window in windows:
        add_events(events_in(window, 2, ingested_at=window.end))
    rate(database_url, *windows)
    first = tick(sensor, database_url, instance)
    for window in windows:
        correct(database_url, CORRECT_IN_PLACE, f"{window.key}-0")

    clock[0] = current_window().start + timedelta(minutes=10)  # all five have left the lookback
    cursor, found = first.cursor, []
    for _ in range(4):
        data = tick(sensor, database_url, instance, cursor)
        cursor = data.cursor
        found += [w.key for w in windows if f"{w.key}: events changed" in (data.skip_message or "")]

    assert found == [w.key for w in windows]


def test_windows_a_longer_lookback_takes_back_in_are_checked_again_as_they_leave_it(
    database_url: str,
    add_events: AddEvents,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RATING_LATE_EVENT_LOOKBACK_HOURS raised between ticks: the cursor's start of the
    windows still to check on leaving lies inside the new lookback, and the windows before
    it would leave unchecked. Found by an audit of the Dagster layer."""
    clock = [current_window().start + timedelta(minutes=10)]
    monkeypatch.setattr(changed_events, "database_clock", lambda conn: clock[0])
    window = hours_ago(6)  # outside a 4 h lookback, inside a 6 h one
    add_events(events_in(window, 2, ingested_at=window.end))
    rate(database_url, window)
    shorter = build_changed_events_sensor(timedelta(hours=4), timedelta(minutes=4))
    longer = build_changed_events_sensor(timedelta(hours=6), timedelta(minutes=6))
    first = tick(shorter, database_url, instance)
    second = tick(longer, database_url, instance, first.cursor)
    correct(database_url, CORRECT_IN_PLACE, f"{window.key}-0")

    clock[0] += HOUR  # the window leaves the longer lookback
    third = tick(longer, database_url, instance, second.cursor)

    assert f"{window.key}: events changed" in (third.skip_message or "")


def test_a_hand_rated_window_before_the_first_partition_is_digested_reported_and_recorded(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """With a lookback reaching before the first partition, a window rated there by hand
    is checked as any other: an event deleted from it is reported with how to rate it (no
    run can) and recorded for all_windows_billed; it is never requested."""
    books = tmp_path / "books"
    shutil.copytree(PRICEBOOK_DIR, books)
    before_first = Window(hourly_windows.start.astimezone(UTC) - 10 * HOUR)
    effective_from = f"{before_first.start:%Y-%m-%dT%H:%M:%SZ}"
    (books / "early.yaml").write_text(
        NEW_VERSION.format(version="early", effective_from=effective_from)
    )
    add_events(events_in(before_first, 3, ingested_at=before_first.end))
    with connect(database_url) as conn:
        rate_window(conn, before_first, load_pricebooks(books), "by-hand")
    delete_events(database_url, [f"{before_first.key}-1"])
    sensor = build_changed_events_sensor(timedelta(hours=87_600), timedelta(days=365))

    found = tick(sensor, database_url, instance, pricebook_dir=books)

    assert requested(found) == []
    assert f"{before_first.key}: events changed since its latest rating" in (
        found.skip_message or ""
    )
    assert "`rating-pipeline rate`" in (found.skip_message or "")
    with psycopg.connect(database_url) as conn:
        recorded = conn.execute("SELECT window_start, events_now FROM late_window").fetchall()
    assert recorded == [(before_first.start, 2)]


def test_changed_events_never_requests_a_window_that_is_not_a_partition(
    instance: dg.DagsterInstance,
) -> None:
    """A corrected window before the first partition (reachable with a long lookback) has
    no partition: the tick must not request one, which Dagster refuses for the whole tick
    (mutant CE8: is_partition dropped)."""
    before_first = Window(hourly_windows.start.astimezone(UTC) - 10 * HOUR)
    rated = LatestRating(before_first, 1, "2026-05-01", "digest-then", 2)
    check = changed_events.DigestCheck(rated, "digest-now", 1)
    found = changed_events.Scan(
        before_first.end + 100 * HOUR, [check], [], changed_events.Cursor(), []
    )

    result = changed_events.evaluate(dg.build_sensor_context(instance=instance), found)

    assert not result.run_requests
