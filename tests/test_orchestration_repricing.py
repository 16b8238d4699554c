"""The ``priced_by_current_pricebooks`` check: a pricebook edited or added after a window
was rated leaves it billed at the old prices until someone re-rates it; the check says
which windows, on the real database."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import dagster as dg

from rating_pipeline.orchestration.checks import (
    PRICED_BY_CURRENT_PRICEBOOKS,
    evaluate_pricebooks,
    priced_by_current_pricebooks,
)
from rating_pipeline.orchestration.resources import PricebookResource, WarehouseResource
from rating_pipeline.pricebook.loader import load_pricebooks
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.periods import close_period
from rating_pipeline.warehouse.repricing import PricedOtherwise
from rating_pipeline.windows import HOUR
from tests.factories import WINDOW_START, BillingEvent
from tests.sensing import hours_ago
from tests.test_orchestration_assets import (
    KEY,
    PRICEBOOK_DIR,
    checks,
    materialize,
    records,
    traffic,
)

LATER_KEY = "2026-06-15-11:00"
JUNE_FILE = "2026-06-01.yaml"


def audit(database_url: str, books: Path) -> dg.AssetCheckResult:
    """Run the check outside any run, as the UI's "Execute" does."""
    context = dg.build_asset_check_context(
        resources={
            "warehouse": WarehouseResource(database_url=database_url),
            "pricebooks": PricebookResource(directory=str(books)),
        }
    )
    result = priced_by_current_pricebooks(context)
    assert isinstance(result, dg.AssetCheckResult), result
    return result


def test_priced_by_current_pricebooks_lists_each_window_a_pricebook_edit_would_price_otherwise(
    database_url: str,
    tmp_path: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    instance: dg.DagsterInstance,
) -> None:
    """Both windows rated under the shipped June version pass; once its file is edited
    (base-small's output rate), both were priced by a file the pricebooks no longer hold,
    until each is re-rated; a closed one says so, as re-rating it adjusts."""
    books = tmp_path / "pricebooks"
    shutil.copytree(PRICEBOOK_DIR, books)
    add_events([*traffic(0), *traffic(1)])
    first = materialize(database_url, partition_key=KEY, pricebook_dir=books, instance=instance)
    assert checks(first)[PRICED_BY_CURRENT_PRICEBOOKS].passed
    assert materialize(
        database_url, partition_key=LATER_KEY, pricebook_dir=books, instance=instance
    ).success
    rated_sha = load_pricebooks(books).versions[0].sha256[:12]
    june = books / JUNE_FILE
    june.write_text(june.read_text().replace('output_per_mtok: "0.60"', 'output_per_mtok: "0.66"'))
    edited_sha = load_pricebooks(books).versions[0].sha256[:12]

    stale = audit(database_url, books)

    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.WARN
    assert stale.metadata["windows_priced_otherwise"].value == 2
    assert records(stale.metadata["windows"]) == [
        {
            "window": key,
            "rated_with": f"2026-06-01 (sha256 {rated_sha})",
            "now_priced_by": f"2026-06-01 (sha256 {edited_sha})",
            "period": "open",
        }
        for key in (KEY, LATER_KEY)
    ]

    rerated = materialize(database_url, partition_key=KEY, pricebook_dir=books, instance=instance)
    with connect(database_url) as conn:
        close_period(conn, WINDOW_START + 2 * HOUR, "finance")

    left = checks(rerated)[PRICED_BY_CURRENT_PRICEBOOKS]
    assert [row["window"] for row in records(left.metadata["windows"])] == [LATER_KEY]
    closed = records(audit(database_url, books).metadata["windows"])
    assert [(row["window"], row["period"]) for row in closed] == [(LATER_KEY, "closed")]
    assert "adjustments on the next invoice" in (audit(database_url, books).description or "")


def test_priced_by_current_pricebooks_skips_windows_billing_nothing_and_says_to_restore(
    database_url: str,
    tmp_path: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    instance: dg.DagsterInstance,
) -> None:
    """A window whose latest rating read no event bills nothing at any price: not listed.
    A window no version covers any more cannot be rated again: the check says to restore
    the version, not to re-rate."""
    books = tmp_path / "pricebooks"
    shutil.copytree(PRICEBOOK_DIR, books)
    add_events(traffic(0))
    for key in (KEY, LATER_KEY):  # 11:00 holds no event
        materialize(database_url, partition_key=key, pricebook_dir=books, instance=instance)
    (books / JUNE_FILE).unlink()

    removed = audit(database_url, books)

    assert removed.metadata["windows_priced_otherwise"].value == 1
    assert [
        (row["window"], row["now_priced_by"]) for row in records(removed.metadata["windows"])
    ] == [(KEY, "no version covers it")]
    assert "restore the version" in (removed.description or "")
    assert "Rate them again" not in (removed.description or "")


def test_priced_otherwise_description_counts_open_and_closed_windows_apart() -> None:
    """Re-rating a closed window adjusts the next invoice, an open one does not: the
    counts the operator reads must not be swapped (mutant C14)."""
    current = load_pricebooks(PRICEBOOK_DIR).versions[-1]
    windows = [
        PricedOtherwise(hours_ago(n), current.version, "0" * 64, current, closed=(n == 3))
        for n in (3, 2, 1)
    ]

    result = evaluate_pricebooks(windows)

    assert "(2 open, 1 closed)" in (result.description or "")
