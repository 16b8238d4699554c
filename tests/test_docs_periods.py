"""The worked example of docs/periods.md stays true: its events are rated, closed, corrected
and invoiced through the production path with the shipped pricebooks, and every table the
doc shows (the frozen row, the adjustments, both invoices) must be what the database holds."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from rating_pipeline.pricebook.loader import load_pricebooks
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.warehouse.invoices import build_invoice
from rating_pipeline.warehouse.periods import close_period
from rating_pipeline.windows import Window
from tests.factories import BillingEvent, make_event

ROOT = Path(__file__).resolve().parent.parent
PERIODS = (ROOT / "docs" / "periods.md").read_text()
SHIPPED = load_pricebooks(ROOT / "pricebooks")

JUNE_WINDOW = Window(datetime(2026, 6, 30, 23, tzinfo=UTC))
JULY_WINDOW = Window(datetime(2026, 7, 1, 10, tzinfo=UTC))
CLOSE_THROUGH = datetime(2026, 7, 1, tzinfo=UTC)
JUNE, JULY = datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)

ROLLUP = """
SELECT auth_id, model_id, event_count, input_tokens, input_rate_per_mtok, output_tokens,
    output_rate_per_mtok, cost_usd
FROM rated_usage WHERE window_start = %(start)s
"""
ADJUSTMENTS = """
SELECT token_class, unit_rate_per_mtok, event_count, quantity_tokens, cost_usd, bill_month,
    invoiced_by
FROM rating_adjustment ORDER BY token_class
"""
LINES = """
SELECT account_id, kind, model_id, token_class, unit_rate_per_mtok, quantity_tokens,
    amount_exact, amount
FROM invoice_line WHERE month = %(month)s
ORDER BY kind COLLATE "C", token_class COLLATE "C"
"""


def event(minute: int, input_tokens: int, output_tokens: int, at: Window) -> BillingEvent:
    return make_event(
        "org-example",
        "base-large",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        occurred_at=at.start.replace(minute=minute),
    )


def block(conn: psycopg.Connection, query: str, **params: object) -> str:
    """The rows as the doc shows them: one per line, cells separated by `` | ``."""

    def cell(value: object) -> str:
        if isinstance(value, datetime):
            return f"{value.astimezone(UTC):%Y-%m}"
        return "null" if value is None else str(value)

    return "\n".join(" | ".join(cell(v) for v in row) for row in conn.execute(query, params))


def test_periods_worked_example_is_what_the_database_does(
    database_url: str, add_events: Callable[[Iterable[BillingEvent]], int]
) -> None:
    add_events([event(12, 120_000, 3_000, JUNE_WINDOW), event(40, 80_000, 2_000, JUNE_WINDOW)])
    with connect(database_url) as conn:
        conn.execute("INSERT INTO billing_account VALUES ('org-example', 'acct-example')")
        conn.commit()
        rate_window(conn, JUNE_WINDOW, SHIPPED, "run-june")
        frozen = block(conn, ROLLUP, start=JUNE_WINDOW.start)
        conn.commit()
        close_period(conn, CLOSE_THROUGH, "finance", "June 2026")
        june_lines = block(conn, LINES, month=JUNE)

    add_events([event(41, 7_777, 333, JUNE_WINDOW), event(5, 50_000, 1_000, JULY_WINDOW)])
    with connect(database_url) as conn:
        late = rate_window(conn, JUNE_WINDOW, SHIPPED, "run-late")
        rate_window(conn, JULY_WINDOW, SHIPPED, "run-july")
        adjustments = block(conn, ADJUSTMENTS)
        conn.commit()
        july = build_invoice(conn, JULY, "invoice-july")
        july_lines = block(conn, LINES, month=JULY)
        assert block(conn, ROLLUP, start=JUNE_WINDOW.start) == frozen

    assert late.adjustments is not None and late.adjustments.inserted == 2
    for shown in (frozen, june_lines, adjustments, july_lines):
        assert f"```text\n{shown}\n```" in PERIODS, shown
    assert f"invoice total {july.amount:f} USD, exact {july.amount_exact:f}" in PERIODS
    assert f"residual {july.residual:f} USD" in PERIODS
