-- What window_usage read: the events and tokens every rating output must account for
-- (the conservation check), and the latest ingested_at among them.
SELECT
    coalesce(sum(event_count), 0) AS event_count,
    coalesce(sum(input_tokens), 0) AS input_tokens,
    coalesce(sum(output_tokens), 0) AS output_tokens,
    max(max_ingested_at) AS max_ingested_at
FROM window_usage
