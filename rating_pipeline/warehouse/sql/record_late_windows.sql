-- A record, by a sensor (late_events, changed_events) or a close, of rated windows whose
-- events changed after their latest rating (rating_log row %(log_ids)s), seen at %(found_at)s,
-- inside the lookback or not.
-- A window recorded against the same rating keeps its found_at, the first finding since
-- that rating (and its whole row, with the same count); a record against an older rating
-- (a tick that read before a rating committed) never replaces one against a newer.
-- Bound: %(window_starts)s, %(events_now)s, %(events_read)s, %(log_ids)s, %(found_at)s.
INSERT INTO late_window AS recorded (window_start, events_now, events_read, log_id, found_at)
SELECT found.window_start, found.events_now, found.events_read, found.log_id, %(found_at)s
FROM unnest(
    %(window_starts)s::timestamptz[], %(events_now)s::bigint[], %(events_read)s::bigint[],
    %(log_ids)s::bigint[]
) AS found (window_start, events_now, events_read, log_id)
ORDER BY found.window_start
ON CONFLICT (window_start) DO UPDATE
SET events_now = excluded.events_now,
    events_read = excluded.events_read,
    log_id = excluded.log_id,
    found_at = CASE
        WHEN recorded.log_id = excluded.log_id THEN recorded.found_at ELSE excluded.found_at
    END
WHERE (recorded.events_now, recorded.log_id) IS DISTINCT FROM (excluded.events_now, excluded.log_id)
  AND recorded.log_id <= excluded.log_id
