"""The PostgreSQL warehouse (contract sections 3, 6, 7 and 8).

  embedded.py    the embedded PostgreSQL under .rating/ when RATING_DATABASE_URL is unset
  database.py    database_url(), connect(), redact_url()
  migrations.py  the schema as Alembic revisions (migrations/versions)
  extract.py     one window's events summed inside PostgreSQL
  reconcile.py   staging by COPY and the set-based reconcile of one window
  engine.py      rate_window(): lock, extract, price, reconcile, log, in one transaction
  outputs.py     one window's stored rows read back as records
  commands.py    the `rate` command
  sql/           every statement, one per file

No pricing happens here: rows are priced by ``rating_pipeline.pricing``.
"""
