-- The latest rating of ONE window, if this rating would produce exactly its output and the
-- rows are still as it left them: its input fingerprint is this one's, it read the same
-- number of events, and no statement outside a rating has written rated_usage or
-- rating_exception since it began (its output_edits_seen is still the counter's value,
-- migration 0004). No row otherwise. Returns what that rating left: the rows of each table,
-- the events each accounts for, the total cost and the checksum.
-- Bound: %(window_start)s, %(fingerprint)s, %(events_read)s, %(edits)s.
SELECT
    latest.rows_inserted + latest.rows_updated + latest.rows_unchanged AS rollups,
    latest.exceptions_inserted + latest.exceptions_updated + latest.exceptions_unchanged
        AS exceptions,
    latest.events_rated,
    latest.events_excepted,
    latest.total_cost_usd,
    latest.output_checksum
FROM (
    SELECT *
    FROM rating_log
    WHERE window_start = %(window_start)s
    ORDER BY log_id DESC
    LIMIT 1
) AS latest
WHERE latest.input_fingerprint = %(fingerprint)s
  AND latest.events_read = %(events_read)s
  AND latest.output_edits_seen = %(edits)s
