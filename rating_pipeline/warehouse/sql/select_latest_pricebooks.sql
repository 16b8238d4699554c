-- The pricebook version and file (its sha256) that priced each rated window's latest
-- rating, oldest window first, for the windows whose latest rating read an event (one that
-- read none bills nothing at any price). One pass of rating_log_window_start_idx.
SELECT window_start, pricebook_version, pricebook_sha256
FROM (
    SELECT DISTINCT ON (window_start) window_start, pricebook_version, pricebook_sha256,
        events_read
    FROM rating_log
    ORDER BY window_start, log_id DESC
) AS latest
WHERE events_read > 0
ORDER BY window_start
