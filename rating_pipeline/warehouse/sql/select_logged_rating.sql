-- The figures one run's rating of ONE window logged (contract 6, Audit): what the
-- materialization of a window whose COMMIT's answer was lost surfaces. Bound: %(run_id)s,
-- %(window_start)s.
SELECT rows_inserted, rows_updated, rows_deleted, rows_unchanged, exceptions_inserted,
    exceptions_updated, exceptions_deleted, exceptions_unchanged, events_read, events_rated,
    events_excepted, total_cost_usd, pricebook_version, pricebook_sha256, max_ingested_at
FROM rating_log
WHERE run_id = %(run_id)s AND window_start = %(window_start)s
