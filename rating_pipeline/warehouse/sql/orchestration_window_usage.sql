-- The window_usage asset: the events of every window in [%(start)s, %(end)s), summed per
-- window. What the rater will read, for the UI; one range scan of the occurred_at index.
-- Windows without events return no row. Sums of bigint are numeric: they cannot overflow.
-- No count(DISTINCT ...): it sorts every event, and made this summary cost several times
-- the rating itself on a busy hour (the rating's metadata counts the rollups anyway).
SELECT
    date_trunc('hour', occurred_at, 'UTC') AS window_start,
    count(*) AS event_count,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    max(ingested_at) AS max_ingested_at
FROM billing_event
WHERE occurred_at >= %(start)s AND occurred_at < %(end)s
GROUP BY 1
ORDER BY 1
