-- The rated_usage rows of [%(start)s, %(end)s) split by (service_tier, context_tier), then
-- in one more row (grand_total true) all together: rollups, events, the stored cost (sum of
-- cost_usd), and per token class, in TOKEN_CLASSES order, its tokens and its cost, the sum
-- of its tokens x its frozen rate x 0.000001. Those are the very terms each row's cost_usd
-- adds up, so the classes add up exactly to the stored cost. One scan for both UI tables.
SELECT
    grouping(service_tier, context_tier) <> 0 AS grand_total,
    service_tier, context_tier, count(*) AS rollups, sum(event_count) AS events,
    sum(cost_usd) AS cost_usd,
    sum(input_tokens), coalesce(sum(input_tokens * input_rate_per_mtok), 0) * 0.000001,
    sum(output_tokens), coalesce(sum(output_tokens * output_rate_per_mtok), 0) * 0.000001,
    sum(cache_read_tokens),
    coalesce(sum(cache_read_tokens * cache_read_rate_per_mtok), 0) * 0.000001,
    sum(cache_write_tokens),
    coalesce(sum(cache_write_tokens * cache_write_rate_per_mtok), 0) * 0.000001,
    sum(cache_write_1h_tokens),
    coalesce(sum(cache_write_1h_tokens * cache_write_1h_rate_per_mtok), 0) * 0.000001,
    sum(reasoning_tokens),
    coalesce(sum(reasoning_tokens * reasoning_rate_per_mtok), 0) * 0.000001,
    sum(audio_input_tokens),
    coalesce(sum(audio_input_tokens * audio_input_rate_per_mtok), 0) * 0.000001,
    sum(audio_output_tokens),
    coalesce(sum(audio_output_tokens * audio_output_rate_per_mtok), 0) * 0.000001,
    sum(image_input_tokens),
    coalesce(sum(image_input_tokens * image_input_rate_per_mtok), 0) * 0.000001
FROM rated_usage
WHERE window_start >= %(start)s AND window_start < %(end)s
GROUP BY GROUPING SETS ((service_tier, context_tier), ())
