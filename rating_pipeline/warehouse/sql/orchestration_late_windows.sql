-- The recorded late windows still billed as before their late events: those whose latest
-- rating is the one the late_events sensor compared (a later rating read the events).
SELECT late.window_start, late.events_now, late.events_read, late.found_at
FROM late_window AS late
WHERE late.log_id = (
    SELECT max(rating_log.log_id) FROM rating_log
    WHERE rating_log.window_start = late.window_start
)
ORDER BY late.window_start
