-- The checksum the latest rating of ONE window logged, if no statement outside a rating
-- has written rated_usage or rating_exception since it committed (its output_edits_seen is
-- still the counter's value); no row otherwise. Bound: %(window_start)s, %(edits)s.
SELECT latest.output_checksum
FROM (
    SELECT output_checksum, output_edits_seen
    FROM rating_log
    WHERE window_start = %(window_start)s
    ORDER BY log_id DESC
    LIMIT 1
) AS latest
WHERE latest.output_edits_seen = %(edits)s
