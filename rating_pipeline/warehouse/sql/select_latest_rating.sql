-- The latest rating of ONE window (the rating log's newest row for it), or no row: what it
-- was fed (its input fingerprint and events digest, and the edit counter of migration 0004
-- as it began) and what it left (the rows of each table, the events each accounts for, the
-- total cost and the checksum). engine.latest_rating decides from these whether this
-- rating's output would be that one's.
-- Bound: %(window_start)s.
SELECT
    input_fingerprint,
    events_digest,
    output_edits_seen,
    events_read,
    rows_inserted + rows_updated + rows_unchanged AS rollups,
    exceptions_inserted + exceptions_updated + exceptions_unchanged AS exceptions,
    events_rated,
    events_excepted,
    total_cost_usd,
    output_checksum
FROM rating_log
WHERE window_start = %(window_start)s
ORDER BY log_id DESC
LIMIT 1
