-- The database's clock: ingested_at is stamped by it, so the late-events sensor's cursor is.
SELECT statement_timestamp() AS now
