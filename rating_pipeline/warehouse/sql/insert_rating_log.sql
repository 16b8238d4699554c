-- The audit line of one rating of one window (contract 6, Audit).
INSERT INTO rating_log (
    run_id, window_start, window_end, pricebook_version, pricebook_sha256,
    rows_inserted, rows_updated, rows_deleted, rows_unchanged,
    exceptions_inserted, exceptions_updated, exceptions_deleted, exceptions_unchanged,
    events_read, events_rated, events_excepted, total_cost_usd, max_ingested_at, rated_at,
    events_digest, window_closed, adjustments_inserted, adjustments_updated,
    adjustments_deleted, adjustments_unchanged, open_adjustment_cost_usd
) VALUES (
    %(run_id)s, %(window_start)s, %(window_end)s, %(pricebook_version)s, %(pricebook_sha256)s,
    %(rows_inserted)s, %(rows_updated)s, %(rows_deleted)s, %(rows_unchanged)s,
    %(exceptions_inserted)s, %(exceptions_updated)s, %(exceptions_deleted)s,
    %(exceptions_unchanged)s, %(events_read)s, %(events_rated)s, %(events_excepted)s,
    %(total_cost_usd)s, %(max_ingested_at)s, %(rated_at)s, %(events_digest)s,
    %(window_closed)s, %(adjustments_inserted)s, %(adjustments_updated)s,
    %(adjustments_deleted)s, %(adjustments_unchanged)s, %(open_adjustment_cost_usd)s
)
