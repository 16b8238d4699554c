-- The recorded late windows older than the lookback (starting before %(lookback_start)s)
-- still billed other than as their events stand now: those whose latest rating is the one
-- the late_events sensor compared (no later rating read the events) and whose (count, max
-- ingested_at) now still differs from what it read (the sensor's comparison). Events now
-- are counted now: upstream may have deleted them again.
SELECT late.window_start, now_in_window.events_now, latest.events_read, late.found_at
FROM late_window AS late
CROSS JOIN LATERAL (
    SELECT rating_log.log_id, rating_log.events_read, rating_log.max_ingested_at
    FROM rating_log
    WHERE rating_log.window_start = late.window_start
    ORDER BY rating_log.log_id DESC
    LIMIT 1
) AS latest
CROSS JOIN LATERAL (
    SELECT count(occurred_at) AS events_now, max(ingested_at) AS max_ingested_at
    FROM billing_event
    WHERE occurred_at >= late.window_start AND occurred_at < late.window_start + interval '1 hour'
) AS now_in_window
WHERE late.window_start < %(lookback_start)s
  AND latest.log_id = late.log_id
  AND (now_in_window.events_now <> latest.events_read
       OR now_in_window.max_ingested_at IS DISTINCT FROM latest.max_ingested_at)
ORDER BY late.window_start
