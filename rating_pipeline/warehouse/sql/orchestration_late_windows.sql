-- The recorded windows older than the lookback (starting before %(lookback_start)s), or
-- found before %(overdue_before)s (no sensor re-rated them within its interval), that no
-- rating has read since: their latest rating is the one a sensor or a close compared, or a
-- later one that began before the finding (it may have read the events before the change).
-- With whether their (count, max ingested_at) differs from what that rating read, its
-- version and events digest: with equal counts, the caller compares digests (a correction
-- in place). A rating begun after the finding read the events as found: it settles them.
WITH candidate AS (
    SELECT late.window_start, late.found_at, latest.*
    FROM late_window AS late
    CROSS JOIN LATERAL (
        SELECT rating_log.log_id, rating_log.events_read, rating_log.max_ingested_at,
            rating_log.pricebook_version, rating_log.events_digest, rating_log.rated_at
        FROM rating_log
        WHERE rating_log.window_start = late.window_start
        ORDER BY rating_log.log_id DESC
        LIMIT 1
    ) AS latest
    WHERE (late.window_start < %(lookback_start)s OR late.found_at < %(overdue_before)s)
      AND (latest.log_id = late.log_id OR latest.rated_at < late.found_at)
)
SELECT candidate.window_start, now_in_window.events_now, candidate.events_read,
    candidate.found_at,
    (now_in_window.events_now <> candidate.events_read
     OR now_in_window.max_ingested_at IS DISTINCT FROM candidate.max_ingested_at)
        AS counts_differ,
    candidate.pricebook_version, candidate.events_digest
FROM candidate
CROSS JOIN LATERAL (
    SELECT
        count(occurred_at) AS events_now,
        max(ingested_at) FILTER (
            WHERE ingested_at >= '0001-01-01 00:00Z' AND ingested_at < '10000-01-01 00:00Z'
        ) AS max_ingested_at
    FROM billing_event
    WHERE occurred_at >= candidate.window_start
      AND occurred_at < candidate.window_start + interval '1 hour'
) AS now_in_window
ORDER BY candidate.window_start
