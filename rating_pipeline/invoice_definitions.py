"""The invoicing code location: ``defs`` with ``invoice_lines`` (contract section 11).

A code location of its own, loaded next to ``rating_pipeline.definitions`` by
``workspace.yaml``: one run takes one partitions definition, so the monthly
``invoice_lines`` cannot share the rating location, where materializing ``*`` for one
hourly partition rates that window (contract section 9). Its dependency on the hourly
``rated_usage`` crosses the locations; the UI's lineage shows which hours feed which month.
Launch a month with ``dg launch -m rating_pipeline.invoice_definitions --assets
invoice_lines --partition 2026-06``.
"""

from __future__ import annotations

import dagster as dg

from rating_pipeline.orchestration.invoices import INVOICE_CHECKS, invoice_lines
from rating_pipeline.orchestration.resources import WAREHOUSE, warehouse_from_environment

defs = dg.Definitions(
    assets=[invoice_lines],
    asset_checks=INVOICE_CHECKS,
    resources={WAREHOUSE: warehouse_from_environment()},
    executor=dg.in_process_executor,
)
