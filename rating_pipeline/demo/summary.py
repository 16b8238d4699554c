"""A readable report of what ``[start, end)`` rated to: cost per hour, tokens and cost per
token class, cost per service tier and context, top principals, exceptions by reason,
totals. Money stays Decimal from the database to the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import psycopg

from rating_pipeline.errors import shown
from rating_pipeline.money import EXACT, exact_sum
from rating_pipeline.warehouse.close_mark import close_mark, month_of, wholly_closed
from rating_pipeline.warehouse.invoices import month_totals
from rating_pipeline.warehouse.outputs import cost_by_tier, cost_by_token_class
from rating_pipeline.warehouse.sqlfiles import load_sql
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
ORDER BY cost_usd DESC, auth_id COLLATE "C"
LIMIT %(limit)s
"""

SUMMARY_EXCEPTION_ROWS = """
SELECT window_start, auth_id, model_id, service_tier, context_tier, reason, detail, event_count
FROM rating_exception
WHERE window_start >= %(start)s AND window_start < %(end)s
ORDER BY window_start, auth_id COLLATE "C", model_id COLLATE "C", reason COLLATE "C",
    service_tier COLLATE "C", context_tier COLLATE "C"
LIMIT %(limit)s
"""

SUMMARY_ADJUSTMENTS = """
SELECT count(*), coalesce(sum(event_count), 0), coalesce(sum(cost_usd), 0)
FROM rating_adjustment
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
    """Aligned columns; a cell that does not all print (an id or a detail naming one, from
    upstream) is quoted, so that it cannot write a line of its own."""
    rows = [[shown(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def summarize(conn: psycopg.Connection, start: datetime, end: datetime) -> str:
    """The report for the windows in ``[start, end)`` (hour-aligned UTC), as of now.

    Reads ``rated_usage``, ``rating_exception`` and ``rating_adjustment``; writes nothing.
    """
    first = require_hour_aligned_utc(start, "summary start")
    stop = require_hour_aligned_utc(end, "summary end")
    if first >= stop:
        raise ValueError(f"summary: start {first.isoformat()} is not before {stop.isoformat()}")
    params: dict[str, object] = {"start": first, "end": stop, "last": stop - HOUR}
    hours = conn.execute(SUMMARY_PER_HOUR, params).fetchall()
    totals = HourTotals.of(hours)
    sections = [
        f"Rated usage for [{first.isoformat()}, {stop.isoformat()})",
        f"(USD rounded half-even to {DISPLAY_PLACES} places for display; "
        "rated_usage keeps exact costs)",
        "",
        "Cost per hour",
        _hours_table(hours, totals),
        "",
        "Tokens and cost per class",
        *_classes_section(conn, first, stop, totals.cost),
        "",
        "Cost per service tier and context",
        *_tiers_section(conn, first, stop, totals.cost),
        "",
        f"Top {TOP_PRINCIPALS} principals by cost",
        _principals_table(conn, params, totals.cost),
        "",
        "Exceptions by reason (not billed)",
        *_exception_sections(conn, params),
        "",
        "Totals",
        *_totals_lines(conn, params, totals),
    ]
    return "\n".join(sections) + "\n"


@dataclass(frozen=True)
class HourTotals:
    """The sums of the per-hour rows: rollups, events billed and excepted, exact cost."""

    rollups: int
    billed: int
    excepted: int
    cost: Decimal

    @classmethod
    def of(cls, hours: Sequence[Sequence[Any]]) -> HourTotals:
        return cls(
            rollups=sum(int(row[1]) for row in hours),
            billed=sum(int(row[2]) for row in hours),
            excepted=sum(int(row[3]) for row in hours),
            cost=exact_sum(Decimal(row[4]) for row in hours),
        )


def _hours_table(hours: Sequence[Sequence[Any]], totals: HourTotals) -> str:
    rows = [
        (_hour(ws), f"{rollups:,}", f"{billed:,}", f"{excepted:,}", usd(Decimal(cost)))
        for ws, rollups, billed, excepted, cost in hours
    ]
    rows.append(
        (
            "total",
            f"{totals.rollups:,}",
            f"{totals.billed:,}",
            f"{totals.excepted:,}",
            usd(totals.cost),
        )
    )
    return _table(
        ("hour (UTC)", "rollups", "events billed", "events excepted", "cost USD"),
        rows,
        (False, True, True, True, True),
    )


def _exact_total(cost: Decimal) -> str:
    return f"  total cost USD: {usd(cost)} (exact: {exact_usd(cost)})"


def _classes_section(
    conn: psycopg.Connection, start: datetime, end: datetime, total: Decimal
) -> list[str]:
    """Billed tokens and cost per token class; the classes add up exactly to the total."""
    classes = cost_by_token_class(conn, start, end)
    if not classes:
        return ["(nothing billed)"]
    cost = exact_sum(c.cost_usd for c in classes)
    rows = [
        (c.token_class, f"{c.tokens:,}", usd(c.cost_usd), _share(c.cost_usd, total))
        for c in classes
    ]
    rows.append(("total", f"{sum(c.tokens for c in classes):,}", usd(cost), _share(cost, total)))
    headers = ("token class", "tokens", "cost USD", "share")
    return [_table(headers, rows, (False, True, True, True)), _exact_total(cost)]


def _tiers_section(
    conn: psycopg.Connection, start: datetime, end: datetime, total: Decimal
) -> list[str]:
    """Rollups, events, tokens and cost per (service tier, context tier)."""
    tiers = cost_by_tier(conn, start, end)
    if not tiers:
        return ["(nothing billed)"]
    cost = exact_sum(t.cost_usd for t in tiers)
    rows = [
        (
            t.service_tier,
            t.context_tier,
            f"{t.rollups:,}",
            f"{t.events:,}",
            f"{t.tokens:,}",
            usd(t.cost_usd),
            _share(t.cost_usd, total),
        )
        for t in tiers
    ]
    headers = ("service tier", "context", "rollups", "events", "tokens", "cost USD", "share")
    right = (False, False, True, True, True, True, True)
    return [_table(headers, rows, right), _exact_total(cost)]


def _principals_table(conn: psycopg.Connection, params: dict[str, object], total: Decimal) -> str:
    principals = conn.execute(SUMMARY_TOP_PRINCIPALS, {**params, "limit": TOP_PRINCIPALS})
    rows = [
        (
            _id(auth),
            f"{int(rollups):,}",
            f"{int(events):,}",
            f"{int(tokens_in):,}",
            f"{int(tokens_out):,}",
            usd(cost),
            _share(cost, total),
        )
        for auth, rollups, events, tokens_in, tokens_out, cost in principals
    ]
    if not rows:
        return "(nothing billed)"
    return _table(
        ("auth_id", "rollups", "events", "input tokens", "output tokens", "cost USD", "share"),
        rows,
        (False, True, True, True, True, True, True),
    )


def _totals_lines(
    conn: psycopg.Connection, params: dict[str, object], totals: HourTotals
) -> list[str]:
    """The span's events and cost, and closed hours' corrections: adjustments, not in the
    rows above, whose events the latest ratings read too (contract 10: events read =
    billed output + adjustments + exceptions)."""
    row = conn.execute(SUMMARY_ADJUSTMENTS, params).fetchone()
    assert row is not None
    count, events, cost = row
    lines = [
        f"  events read:     {totals.billed + totals.excepted + int(events):,}",
        f"  events billed:   {totals.billed:,} in {totals.rollups:,} rollups",
        f"  events excepted: {totals.excepted:,}",
        f"  cost USD:        {usd(totals.cost)} (exact: {exact_usd(totals.cost)})",
    ]
    if count:
        lines.append(
            f"  adjustments:     {int(count):,} rows, {int(events):+,} events, cost USD "
            f"{usd(cost)} (exact: {exact_usd(cost)}): closed hours' corrections, each billed "
            "on the invoice after its hour's close"
        )
    return lines


def _exception_sections(conn: psycopg.Connection, params: dict[str, object]) -> list[str]:
    reasons = conn.execute(load_sql("select_exceptions_by_reason"), params).fetchall()
    if not reasons:
        return ["(none: every event was billed)"]
    by_reason = _table(
        ("reason", "rollups", "events", "input tokens", "output tokens"),
        [
            (reason, f"{int(n):,}", f"{int(ev):,}", f"{int(ti):,}", f"{int(to):,}")
            for reason, n, ev, ti, to in reasons
        ],
        (False, True, True, True, True),
    )
    listed = conn.execute(SUMMARY_EXCEPTION_ROWS, {**params, "limit": EXCEPTIONS_LISTED})
    rows = _table(
        ("hour (UTC)", "auth_id", "model_id", "tier", "context", "reason", "events", "detail"),
        [
            (_hour(ws), _id(auth), _id(model), tier, ctx, reason, f"{int(events):,}", detail)
            for ws, auth, model, tier, ctx, reason, detail, events in listed
        ],
        (False, False, False, False, False, False, True, False),
    )
    sections = [by_reason, "", "Exceptions", rows]
    remaining = sum(int(rollups) for _, rollups, *_ in reasons) - EXCEPTIONS_LISTED
    if remaining > 0:
        sections.append(f"... and {remaining:,} more")
    return sections


def _id(text: str) -> str:
    """An id as is, or quoted when blank or padded so that it can be seen."""
    return text if text and text == text.strip() else repr(text)


def _share(part: Decimal, whole: Decimal) -> str:
    if not whole:
        return "-"
    percent = (part * 100 / whole).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN)
    return f"{percent}%"


def invoices_summary(conn: psycopg.Connection, months: Sequence[datetime]) -> str:
    """Each month's invoice per account: its lines, exact sum, total (the sum of its lines
    rounded half-even to cents: the invoice's one rounding point) and residual."""
    mark = close_mark(conn)
    sections = []
    for month in map(month_of, months):
        state = "closed, frozen" if wholly_closed(month, mark) else "open"
        totals = month_totals(conn, month)
        sections += ["", f"Invoice {month:%Y-%m} ({state}), per account"]
        if not totals:
            sections.append("(no lines)")
            continue
        rows = [
            (
                _id(t.account_id),
                f"{t.line_count:,}",
                exact_usd(t.amount_exact),
                f"{t.amount:f}",
                f"{t.residual:f}",
            )
            for t in totals
        ]
        headers = ("account", "lines", "exact USD", "invoice USD", "residual USD")
        sections.append(_table(headers, rows, (False, True, True, True, True)))
        exact = exact_sum(t.amount_exact for t in totals)
        invoiced = exact_sum(t.amount for t in totals)
        sections.append(
            f"  all accounts: {invoiced:f} USD invoiced, {exact_usd(exact)} exact, "
            f"residual {EXACT.subtract(invoiced, exact):f}"
        )
    return "\n".join(sections[1:]) + "\n"
