"""The PostgreSQL warehouse (contract sections 3, 6, 7, 8, 10 and 11).

  embedded.py    the embedded PostgreSQL under .rating/ when RATING_DATABASE_URL is unset
  database.py    database_url(), connect(), redact_url()
  migrations.py  the schema as Alembic revisions (migrations/versions)
  online_ddl.py  the revisions' DDL on upstream's live billing_event: concurrent index
                 builds, a brief lock under lock_timeout
  extract.py     one window's events summed and digested inside PostgreSQL
  reconcile.py   per table, one statement: compare this rating's output (the priced rollups
                 of sql/price_window.sql, the one place a rollup's cost is computed, or the
                 exceptions) with the live rows, write the differences
  engine.py      rate_window(): begin, read usage, converge, log, summarize; one transaction
  close_mark.py  the close mark and the periods lock that holds it still
  periods.py     `period close` and `period status`
  invoices.py    a month's invoice lines: build, totals, CSV export
  outputs.py     stored rows read back as records
  commands.py    the `rate` command
  sql/           the rating's, the reconciles', the periods' and the Dagster layer's
                 statements, one per file (short lookups and catalog queries stay as
                 constants beside the code that runs them)

The pricing rules are not here: ``pricing.resolve`` answers them once per distinct (model,
bases) of a window; only the exact arithmetic on its answers runs here, in SQL.
"""
