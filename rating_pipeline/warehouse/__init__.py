"""The PostgreSQL warehouse (contract sections 3, 6, 7 and 8).

  embedded.py    the embedded PostgreSQL under .rating/ when RATING_DATABASE_URL is unset
  database.py    database_url(), connect(), redact_url()
  migrations.py  the schema as Alembic revisions (migrations/versions)
  extract.py     one window's events summed and digested inside PostgreSQL, one row per
                 rollup
  fingerprint.py the digest of everything a rating's output depends on (its inputs)
  reconcile.py   per table, one statement: price, compare with the live rows, write the
                 differences
  engine.py      rate_window(): lock, fingerprint the context, sum the events, then either
                 carry an unchanged window or resolve, reconcile and checksum it, log; one
                 transaction
  outputs.py     one window's stored rows (and the costliest of them) read back as records
  commands.py    the `rate` command
  sql/           every statement, one per file

The pricing rules are not here: ``pricing.resolve`` answers them once per distinct (model,
bases) of a window; only the exact arithmetic on its answers runs here, in SQL.
"""
