"""windows.py: one UTC hour, half-open, named by its Dagster partition key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from rating_pipeline.windows import (
    HOUR,
    WINDOWED_FROM,
    WINDOWED_UNTIL,
    Window,
    WindowError,
    parse_instant,
    windows_between,
)


@pytest.mark.parametrize(
    "start",
    [
        WINDOWED_FROM,
        datetime(999, 12, 31, 23, tzinfo=UTC),
        datetime(2026, 6, 15, 10, tzinfo=UTC),
        WINDOWED_UNTIL,
    ],
)
def test_a_window_key_names_its_window_in_every_year(start: datetime) -> None:
    """The key is the partition key Dagster and the CLI log name a window by: it always has
    four digits of year, and reads back as the same window."""
    window = Window(start)
    assert window.key[:4] == f"{start.year:04d}" and window.key[4] == "-"
    assert Window.from_key(window.key) == window


@pytest.mark.parametrize(
    "key", ["2026-06-15-10:30", "2026-06-15T10:00", "2026-06-15-10", "", "2026-13-01-00:00"]
)
def test_a_key_that_is_no_hourly_partition_is_refused_naming_it(key: str) -> None:
    with pytest.raises(WindowError, match=f"not an hourly partition key: {key!r}|whole hour"):
        Window.from_key(key)


def test_an_instant_falls_in_the_utc_hour_that_holds_it() -> None:
    """Half-open: the hour's last microsecond is in it, its end is in the next window."""
    start = datetime(2026, 6, 15, 10, tzinfo=UTC)
    assert Window.containing(start + timedelta(minutes=59, microseconds=59_999_999)).start == start
    assert Window.containing(start + timedelta(hours=1)).start == start + timedelta(hours=1)
    plus_two = timezone(timedelta(hours=2))
    assert Window.containing(datetime(2026, 6, 15, 12, 30, tzinfo=plus_two)).start == start
    with pytest.raises(WindowError, match="no timezone"):
        Window.containing(datetime(2026, 6, 15, 10))


@pytest.mark.parametrize(
    ("start", "message"),
    [
        (datetime(2026, 6, 15, 10), "has no timezone"),
        (datetime(2026, 6, 15, 12, tzinfo=timezone(timedelta(hours=2))), "is not UTC"),
        (datetime(2026, 6, 15, 10, 0, 0, 1, tzinfo=UTC), "is not on a whole hour"),
    ],
)
def test_a_window_starts_only_on_a_whole_utc_hour(start: datetime, message: str) -> None:
    with pytest.raises(WindowError, match=message):
        Window(start)


def test_a_window_is_one_utc_hour_whatever_zone_names_its_start() -> None:
    """Contract 2: one UTC hour. 00:00 in Atlantic/Azores on 2026-10-25 is 00:00 UTC, and
    the zone falls back an hour within it: a start kept in that zone made a two-hour window."""
    start = datetime(2026, 10, 25, 0, tzinfo=ZoneInfo("Atlantic/Azores"))
    assert start.utcoffset() == timedelta(0)
    utc_start = datetime(2026, 10, 25, 0, tzinfo=UTC)
    one_window = windows_between(start, utc_start + HOUR)
    for window in (Window(start), *one_window):
        assert window == Window.from_key("2026-10-25-00:00")
        assert (window.start, window.end) == (utc_start, utc_start + HOUR)
        assert window.end - window.start == HOUR and window.start.tzinfo is UTC


def test_windows_between_covers_start_up_to_but_not_including_end() -> None:
    start = datetime(2026, 6, 15, 22, tzinfo=UTC)
    windows = list(windows_between(start, start + timedelta(hours=3)))
    assert [w.key for w in windows] == ["2026-06-15-22:00", "2026-06-15-23:00", "2026-06-16-00:00"]
    with pytest.raises(WindowError, match="is not before end"):
        list(windows_between(start, start))


@pytest.mark.parametrize("zeros", [7, 9, 12])
def test_an_instant_written_with_more_than_six_zero_fraction_digits_is_that_instant(
    zeros: int,
) -> None:
    """Nanoseconds of zero are exactly the hour: refusing them as finer than a microsecond
    said something false. Found by a review of the command line."""
    text = f"2026-06-15T10:00:00.{'0' * zeros}Z"
    assert parse_instant(text) == datetime(2026, 6, 15, 10, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-06-15T10:00:00.0000001Z", "2026-06-15T10:00:00+00:00:00.5"])
def test_an_instant_finer_than_a_microsecond_is_refused_not_rounded(text: str) -> None:
    """datetime would drop the extra digits and see a whole hour where there is none."""
    with pytest.raises(WindowError, match="finer than a microsecond"):
        parse_instant(text)
    assert parse_instant(" 2026-06-15T10:00:00Z ") == datetime(2026, 6, 15, 10, tzinfo=UTC)
