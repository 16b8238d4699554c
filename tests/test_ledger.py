"""The ledger balances (contract sections 10 and 11), on the real database."""

from __future__ import annotations

from rating_pipeline.pricebook.model import Pricebooks
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.warehouse.invoices import build_invoice
from rating_pipeline.warehouse.periods import close_period
from rating_pipeline.windows import Window
from tests.conftest import insert_events, utc
from tests.factories import make_event, make_version, own


def test_a_wholly_closed_months_build_reports_its_lines_totals_exactly(database_url: str) -> None:
    """A build of a frozen month reports the sums of its lines: 2**62 input tokens at a
    rate just under 10**6 USD per million cost 31 significant digits, more than a default
    decimal context keeps."""
    march = utc(2026, 3, 1)
    version = make_version({"base-large": own("999999.999999", "10")}, effective_from=march)
    hour = Window(utc(2026, 3, 31, 23))
    insert_events(database_url, [make_event(input_tokens=2**62, occurred_at=hour.start)])
    with connect(database_url) as conn:
        rate_window(conn, hour, Pricebooks((version,)), "run-1")
        close_period(conn, utc(2026, 4, 1), "finance")
        built = build_invoice(conn, march, "build-1")
        lines = conn.execute("SELECT sum(amount_exact), sum(amount) FROM invoice_line").fetchone()
    assert built.frozen
    assert (built.amount_exact, built.amount) == lines
