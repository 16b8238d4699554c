"""A readable report of what ``[start, end)`` rated to: cost per hour, top principals,
exceptions by reason, totals. Money stays Decimal from the database to the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

import psycopg

from rating_pipeline.windows import HOUR, require_hour_aligned_utc

# One row per hour of the range, rated or not: billed rollups/events/cost, excepted events.
SUMMARY_PER_HOUR = """
SELECT hour.window_start,
       coalesce(billed.rollups, 0),
       coalesce(billed.events, 0),
       coalesce(excepted.events, 0),
       coalesce(billed.cost_usd, 0)
FROM generate_series(%(start)s::timestamptz, %(last)s::timestamptz, interval '1 hour')
     AS hour(window_start)
LEFT JOIN (
    SELECT window_start, count(*) AS rollups, sum(event_count) AS events,
           sum(cost_usd) AS cost_usd
    FROM rated_usage
    WHERE window_start >= %(start)s AND window_start < %(end)s
    GROUP BY window_start
) AS billed USING (window_start)
LEFT JOIN (
    SELECT window_start, sum(event_count) AS events
    FROM rating_exception
    WHERE window_start >= %(start)s AND window_start < %(end)s
    GROUP BY window_start
) AS excepted USING (window_start)
ORDER BY hour.window_start
"""

SUMMARY_TOP_PRINCIPALS = """
SELECT auth_id, count(*), sum(event_count), sum(input_tokens), sum(output_tokens),
       sum(cost_usd) AS cost_usd
FROM rated_usage
WHERE window_start >= %(start)s AND window_start < %(end)s
GROUP BY auth_id
ORDER BY cost_usd DESC, auth_id
LIMIT %(limit)s
"""

SUMMARY_EXCEPTIONS_BY_REASON = """
SELECT reason, count(*), sum(event_count), sum(input_tokens), sum(output_tokens)
FROM rating_exception
WHERE window_start >= %(start)s AND window_start < %(end)s
GROUP BY reason
ORDER BY reason
"""

SUMMARY_EXCEPTION_ROWS = """
SELECT window_start, auth_id, model_id, reason, detail, event_count
FROM rating_exception
WHERE window_start >= %(start)s AND window_start < %(end)s
ORDER BY window_start, auth_id, model_id, reason
LIMIT %(limit)s
"""

SUMMARY_EXCEPTION_COUNT = """
SELECT count(*) FROM rating_exception
WHERE window_start >= %(start)s AND window_start < %(end)s
"""

# Display only: rated_usage keeps exact costs (12 places); the report rounds them, half-even,
# to DISPLAY_PLACES and prints the exact total as well.
DISPLAY_PLACES = 4
DISPLAY_QUANTUM = Decimal(1).scaleb(-DISPLAY_PLACES)
TOP_PRINCIPALS = 10
EXCEPTIONS_LISTED = 20


def usd(amount: Decimal) -> str:
    """``amount`` for reading: half-even to DISPLAY_PLACES places, thousands separated."""
    return format(amount.quantize(DISPLAY_QUANTUM, rounding=ROUND_HALF_EVEN), ",f")


def exact_usd(amount: Decimal) -> str:
    return format(amount, ",f")


def _hour(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def summarize(conn: psycopg.Connection, start: datetime, end: datetime) -> str:
    """The report for the windows in ``[start, end)`` (hour-aligned UTC), as of now.

    Reads ``rated_usage`` and ``rating_exception`` only; writes nothing.
    """
    first = require_hour_aligned_utc(start, "summary start")
    stop = require_hour_aligned_utc(end, "summary end")
    if first >= stop:
        raise ValueError(f"summary: start {first.isoformat()} is not before {stop.isoformat()}")
    params: dict[str, object] = {"start": first, "end": stop, "last": stop - HOUR}

    hours = conn.execute(SUMMARY_PER_HOUR, params).fetchall()
    total_rollups = sum(int(row[1]) for row in hours)
    total_billed = sum(int(row[2]) for row in hours)
    total_excepted = sum(int(row[3]) for row in hours)
    total_cost = sum((Decimal(row[4]) for row in hours), Decimal(0))
    sections = [
        f"Rated usage for [{first.isoformat()}, {stop.isoformat()})",
        f"(USD rounded half-even to {DISPLAY_PLACES} places for display; "
        "rated_usage keeps exact costs)",
        "",
        "Cost per hour",
        _table(
            ("hour (UTC)", "rollups", "events billed", "events excepted", "cost USD"),
            [
                (_hour(ws), f"{rollups:,}", f"{billed:,}", f"{excepted:,}", usd(Decimal(cost)))
                for ws, rollups, billed, excepted, cost in hours
            ]
            + [
                (
                    "total",
                    f"{total_rollups:,}",
                    f"{total_billed:,}",
                    f"{total_excepted:,}",
                    usd(total_cost),
                )
            ],
            (False, True, True, True, True),
        ),
    ]

    principals = conn.execute(SUMMARY_TOP_PRINCIPALS, {**params, "limit": TOP_PRINCIPALS})
    principal_rows = [
        (
            auth,
            f"{int(rollups):,}",
            f"{int(events):,}",
            f"{int(tokens_in):,}",
            f"{int(tokens_out):,}",
            usd(cost),
            _share(cost, total_cost),
        )
        for auth, rollups, events, tokens_in, tokens_out, cost in principals
    ]
    sections += ["", f"Top {TOP_PRINCIPALS} principals by cost"]
    sections.append(
        _table(
            ("auth_id", "rollups", "events", "input tokens", "output tokens", "cost USD", "share"),
            principal_rows,
            (False, True, True, True, True, True, True),
        )
        if principal_rows
        else "(nothing billed)"
    )

    reasons = conn.execute(SUMMARY_EXCEPTIONS_BY_REASON, params).fetchall()
    sections += ["", "Exceptions by reason (not billed)"]
    if reasons:
        sections.append(
            _table(
                ("reason", "rollups", "events", "input tokens", "output tokens"),
                [
                    (reason, f"{int(n):,}", f"{int(ev):,}", f"{int(ti):,}", f"{int(to):,}")
                    for reason, n, ev, ti, to in reasons
                ],
                (False, True, True, True, True),
            )
        )
        listed = conn.execute(SUMMARY_EXCEPTION_ROWS, {**params, "limit": EXCEPTIONS_LISTED})
        sections += ["", "Exceptions"]
        sections.append(
            _table(
                ("hour (UTC)", "auth_id", "model_id", "reason", "events", "detail"),
                [
                    (_hour(ws), _id(auth), _id(model), reason, f"{int(events):,}", detail)
                    for ws, auth, model, reason, detail, events in listed
                ],
                (False, False, False, False, True, False),
            )
        )
        count_row = conn.execute(SUMMARY_EXCEPTION_COUNT, params).fetchone()
        remaining = (int(count_row[0]) if count_row else 0) - EXCEPTIONS_LISTED
        if remaining > 0:
            sections.append(f"... and {remaining:,} more")
    else:
        sections.append("(none: every event was billed)")

    sections += [
        "",
        "Totals",
        f"  events read:     {total_billed + total_excepted:,}",
        f"  events billed:   {total_billed:,} in {total_rollups:,} rollups",
        f"  events excepted: {total_excepted:,}",
        f"  cost USD:        {usd(total_cost)} (exact: {exact_usd(total_cost)})",
    ]
    return "\n".join(sections) + "\n"


def _id(text: str) -> str:
    """An id as is, or quoted when blank or padded so that it can be seen."""
    return text if text and text == text.strip() else repr(text)


def _share(part: Decimal, whole: Decimal) -> str:
    if not whole:
        return "-"
    percent = (part * 100 / whole).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN)
    return f"{percent}%"
