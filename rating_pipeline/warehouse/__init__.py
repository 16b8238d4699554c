"""The PostgreSQL warehouse (contract sections 3, 6, 7 and 8).

  embedded.py    the embedded PostgreSQL under .rating/ when RATING_DATABASE_URL is unset
  database.py    database_url(), connect(), redact_url()
  migrations.py  the schema as Alembic revisions (migrations/versions)
  online_ddl.py  the revisions' DDL on upstream's live billing_event: concurrent index
                 builds, a brief lock under lock_timeout
  extract.py     one window's events summed and digested inside PostgreSQL
  reconcile.py   per table, one statement: price, compare with the live rows, write the
                 differences (the one place a cost is computed)
  engine.py      rate_window(): begin, read usage, converge, log, summarize; one transaction
  outputs.py     stored rows read back as records
  commands.py    the `rate` command
  sql/           every statement, one per file

The pricing rules are not here: ``pricing.resolve`` answers them once per distinct (model,
bases) of a window; only the exact arithmetic on its answers runs here, in SQL.
"""
