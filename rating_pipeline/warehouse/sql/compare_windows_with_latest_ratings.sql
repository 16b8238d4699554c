-- Each rated window of [%(start)s, %(through)s) whose latest rating is none of
-- %(compared_log_ids)s, with that rating's log_id and whether it read another count of
-- events or another max(ingested_at) than the window holds now (late, deleted or moved
-- events, unless they cancel out in both), oldest first. Each window's events by the
-- occurred_at index.
WITH latest AS (
    SELECT DISTINCT ON (window_start) window_start, log_id, events_read, max_ingested_at
    FROM rating_log
    WHERE window_start >= %(start)s AND window_start < %(through)s
    ORDER BY window_start, log_id DESC
),
compared AS (
    SELECT * FROM latest WHERE NOT (log_id = ANY (%(compared_log_ids)s::bigint[]))
),
now_in_window AS (
    SELECT
        compared.window_start,
        count(billing_event.occurred_at) AS events_now,  -- every row the join found
        max(billing_event.ingested_at) FILTER (
            WHERE billing_event.ingested_at >= '0001-01-01 00:00Z' AND billing_event.ingested_at < '10000-01-01 00:00Z'
        ) AS max_ingested_at
    FROM compared
    LEFT JOIN billing_event
        ON billing_event.occurred_at >= compared.window_start
       AND billing_event.occurred_at < compared.window_start + interval '1 hour'
    GROUP BY compared.window_start
)
SELECT
    compared.window_start, now_in_window.events_now, compared.events_read, compared.log_id,
    now_in_window.events_now <> compared.events_read
        OR now_in_window.max_ingested_at IS DISTINCT FROM compared.max_ingested_at
        AS changed
FROM compared
JOIN now_in_window ON now_in_window.window_start = compared.window_start
ORDER BY compared.window_start
