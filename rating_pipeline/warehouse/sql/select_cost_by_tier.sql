-- Rollups, events, tokens (every class) and exact cost per (service_tier, context_tier) of
-- the rated_usage rows of [%(start)s, %(end)s), tiers in the order of %(service_tiers)s
-- and %(context_tiers)s. cost_usd is the sum of the rows' cost_usd: the tiers add up
-- exactly to the rows' total.
SELECT service_tier, context_tier, count(*) AS rollups, sum(event_count) AS events,
       sum(input_tokens) + sum(output_tokens) + sum(cache_read_tokens)
           + sum(cache_write_tokens) + sum(cache_write_1h_tokens) + sum(reasoning_tokens)
           + sum(audio_input_tokens) + sum(audio_output_tokens) + sum(image_input_tokens)
           AS tokens,
       sum(cost_usd) AS cost_usd
FROM rated_usage
WHERE window_start >= %(start)s AND window_start < %(end)s
GROUP BY service_tier, context_tier
ORDER BY array_position(%(service_tiers)s::text[], service_tier),
    array_position(%(context_tiers)s::text[], context_tier)
