-- The pricebook version and file (its sha256) that priced each rated window's latest
-- rating, oldest window first.
SELECT DISTINCT ON (window_start) window_start, pricebook_version, pricebook_sha256
FROM rating_log
ORDER BY window_start, log_id DESC
