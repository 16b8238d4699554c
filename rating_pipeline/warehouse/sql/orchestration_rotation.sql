-- The changed-events sensor's next windows: the latest rating_log row of up to %(limit)s
-- rated windows of the lookback ([%(lookback_start)s, %(now)s), closed windows only), those
-- after %(after)s first (NULL: from the start), then from the lookback's start again. The
-- rotation's whole state is %(after)s, the last window the previous tick checked.
SELECT window_start, log_id, pricebook_version, events_digest, events_read
FROM (
    SELECT DISTINCT ON (window_start)
        window_start, log_id, pricebook_version, events_digest, events_read
    FROM rating_log
    WHERE window_start >= %(lookback_start)s AND window_end <= %(now)s
    ORDER BY window_start, log_id DESC
) AS latest
ORDER BY window_start > coalesce(%(after)s::timestamptz, '-infinity') DESC, window_start
LIMIT %(limit)s
