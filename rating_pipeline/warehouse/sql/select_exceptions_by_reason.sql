-- The rating_exception rows of [%(start)s, %(end)s), counted per reason: rollups, events
-- and tokens that did not bill.
SELECT
    reason,
    count(*) AS rollups,
    sum(event_count) AS event_count,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens
FROM rating_exception
WHERE window_start >= %(start)s AND window_start < %(end)s
GROUP BY reason
ORDER BY reason COLLATE "C"
