"""Rating windows: one UTC hour, half-open ``[start, start + 1h)``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rating_pipeline.errors import RatingPipelineError

HOUR = timedelta(hours=1)
# The instants a window can hold: Python's datetimes span years 1 to 9999, PostgreSQL's
# timestamps reach further and hold -infinity and infinity. An event whose occurred_at lies
# outside [WINDOWED_FROM, WINDOWED_UNTIL) is in no window, like one without an occurred_at.
WINDOWED_FROM = datetime(1, 1, 1, tzinfo=UTC)
WINDOWED_UNTIL = datetime(9999, 12, 31, 23, tzinfo=UTC)
PARTITION_KEY_FORMAT = "%Y-%m-%d-%H:%M"


class WindowError(RatingPipelineError, ValueError):
    """Window bounds that are not whole UTC hours, or that are out of order."""


# A fraction of a second past the microsecond, in the time (a digit past the sixth that
# is not 0) or in the offset: what datetime.fromisoformat drops without a word.
FINER_THAN_A_MICROSECOND = re.compile(r"[.,]\d{6}\d*[1-9]|[+-]\d{2}:?\d{2}:?\d{2}[.,]\d")


def parse_instant(text: str) -> datetime:
    """``text`` as an ISO-8601 instant, exactly: ValueError where it is not one, WindowError
    where it is finer than a microsecond (datetime would drop that, and see a whole hour
    where there is none)."""
    if FINER_THAN_A_MICROSECOND.search(text):
        raise WindowError(f"{text!r} is finer than a microsecond, so not on a whole hour")
    return datetime.fromisoformat(text.strip())


def parse_utc_instant(text: str) -> datetime:
    """``text`` as an ISO-8601 instant with its offset, in UTC: ValueError where it is no
    instant, WindowError (a ValueError) where it has no offset (it would be read in the
    local zone)."""
    instant = datetime.fromisoformat(text)
    if instant.utcoffset() is None:
        raise WindowError(f"{text!r} has no UTC offset")
    return instant.astimezone(UTC)


def require_hour_aligned_utc(instant: datetime, what: str = "instant") -> datetime:
    """``instant`` in UTC if it is timezone-aware, at UTC's offset and on the hour; else
    WindowError."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise WindowError(f"{what} {instant.isoformat()} has no timezone; windows are UTC")
    if instant.utcoffset() != timedelta(0):
        raise WindowError(f"{what} {instant.isoformat()} is not UTC")
    if (instant.minute, instant.second, instant.microsecond) != (0, 0, 0):
        raise WindowError(f"{what} {instant.isoformat()} is not on a whole hour")
    return instant.astimezone(UTC)


@dataclass(frozen=True, order=True)
class Window:
    """One rating window, the hour from ``start`` (a whole UTC hour; ``Window.from_key``
    reads one from its key)."""

    start: datetime

    def __post_init__(self) -> None:
        # Kept in UTC: a zone at UTC's offset can leave it within the hour (Atlantic/Azores
        # falls back at 01:00 UTC), and start + HOUR would be two hours.
        object.__setattr__(self, "start", require_hour_aligned_utc(self.start, "window start"))

    @classmethod
    def from_key(cls, key: str) -> Window:
        """The window of a Dagster hourly partition key such as ``2026-06-15-10:00``."""
        try:
            naive = datetime.strptime(key, PARTITION_KEY_FORMAT)
        except ValueError as exc:
            raise WindowError(f"not an hourly partition key: {key!r}") from exc
        return cls(naive.replace(tzinfo=UTC))

    @classmethod
    def containing(cls, instant: datetime) -> Window:
        """The window an instant (timezone-aware) falls in."""
        if instant.tzinfo is None:
            raise WindowError(f"instant {instant.isoformat()} has no timezone")
        utc = instant.astimezone(UTC)
        return cls(utc.replace(minute=0, second=0, microsecond=0))

    @property
    def end(self) -> datetime:
        return self.start + HOUR

    @property
    def key(self) -> str:
        """``PARTITION_KEY_FORMAT``, with four digits of year in every year (``%Y`` alone
        prints year 999 as ``999`` on Linux, a key ``from_key`` cannot read back)."""
        return self.start.strftime(PARTITION_KEY_FORMAT.replace("%Y", f"{self.start.year:04d}"))

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def require_span(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` as whole windows: both bounds hour-aligned UTC and ``start < end``;
    else WindowError."""
    first = require_hour_aligned_utc(start, "start")
    stop = require_hour_aligned_utc(end, "end")
    if first >= stop:
        raise WindowError(f"start {first.isoformat()} is not before end {stop.isoformat()}")
    return first, stop


def windows_between(start: datetime, end: datetime) -> Iterator[Window]:
    """Every window in ``[start, end)``; both bounds hour-aligned UTC and ``start < end``."""
    current, stop = require_span(start, end)
    while current < stop:
        yield Window(current)
        current += HOUR
