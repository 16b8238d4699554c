-- The rollup keys of ONE closed window where its frozen rated_usage row plus all its
-- adjustments, stamped and open, differ from its latest output (window_output) in events,
-- any class's tokens or cost, with their number; contract 10 wants none. A join of the
-- three per key (adjustments summed first: they are few). Bound: %(window_start)s.
WITH billed AS (
    SELECT auth_id, model_id, service_tier, context_tier, event_count, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, audio_input_tokens, audio_output_tokens, image_input_tokens, cost_usd
    FROM rated_usage
    WHERE window_start = %(window_start)s::timestamptz
),
adjusted AS (
    SELECT
        auth_id, model_id, service_tier, context_tier,
        sum(event_count) AS event_count,
        sum(quantity_tokens) FILTER (WHERE token_class = 'input') AS input_tokens,
        sum(quantity_tokens) FILTER (WHERE token_class = 'output') AS output_tokens,
        sum(quantity_tokens) FILTER (WHERE token_class = 'cache_read') AS cache_read_tokens,
        sum(quantity_tokens) FILTER (WHERE token_class = 'cache_write') AS cache_write_tokens,
        sum(quantity_tokens) FILTER (WHERE token_class = 'cache_write_1h') AS cache_write_1h_tokens,
        sum(quantity_tokens) FILTER (WHERE token_class = 'reasoning') AS reasoning_tokens,
        sum(quantity_tokens) FILTER (WHERE token_class = 'audio_input') AS audio_input_tokens,
        sum(quantity_tokens) FILTER (WHERE token_class = 'audio_output') AS audio_output_tokens,
        sum(quantity_tokens) FILTER (WHERE token_class = 'image_input') AS image_input_tokens,
        sum(cost_usd) AS cost_usd
    FROM rating_adjustment
    WHERE window_start = %(window_start)s::timestamptz
    GROUP BY auth_id, model_id, service_tier, context_tier
),
unbalanced AS (
    SELECT auth_id, model_id, service_tier, context_tier
    FROM window_output AS o
    FULL JOIN billed AS b USING (auth_id, model_id, service_tier, context_tier)
    FULL JOIN adjusted AS a USING (auth_id, model_id, service_tier, context_tier)
    WHERE (
        coalesce(b.event_count, 0) + coalesce(a.event_count, 0),
        coalesce(b.input_tokens, 0) + coalesce(a.input_tokens, 0),
        coalesce(b.output_tokens, 0) + coalesce(a.output_tokens, 0),
        coalesce(b.cache_read_tokens, 0) + coalesce(a.cache_read_tokens, 0),
        coalesce(b.cache_write_tokens, 0) + coalesce(a.cache_write_tokens, 0),
        coalesce(b.cache_write_1h_tokens, 0) + coalesce(a.cache_write_1h_tokens, 0),
        coalesce(b.reasoning_tokens, 0) + coalesce(a.reasoning_tokens, 0),
        coalesce(b.audio_input_tokens, 0) + coalesce(a.audio_input_tokens, 0),
        coalesce(b.audio_output_tokens, 0) + coalesce(a.audio_output_tokens, 0),
        coalesce(b.image_input_tokens, 0) + coalesce(a.image_input_tokens, 0),
        coalesce(b.cost_usd, 0) + coalesce(a.cost_usd, 0)
    ) IS DISTINCT FROM (
        coalesce(o.event_count, 0), coalesce(o.input_tokens, 0), coalesce(o.output_tokens, 0),
        coalesce(o.cache_read_tokens, 0), coalesce(o.cache_write_tokens, 0),
        coalesce(o.cache_write_1h_tokens, 0), coalesce(o.reasoning_tokens, 0),
        coalesce(o.audio_input_tokens, 0), coalesce(o.audio_output_tokens, 0),
        coalesce(o.image_input_tokens, 0), coalesce(o.cost_usd, 0)
    )
)
SELECT count(*) OVER () AS unbalanced, auth_id, model_id, service_tier, context_tier
FROM unbalanced
ORDER BY auth_id COLLATE "C", model_id COLLATE "C", service_tier COLLATE "C",
    context_tier COLLATE "C"
LIMIT 5
