-- The rollup keys of ONE closed window where its frozen rated_usage rows plus all their
-- adjustments, stamped and open, differ from its latest output (window_output) in events,
-- any class's tokens or cost, with their number; contract 10 wants none. Bound:
-- %(window_start)s.
WITH difference AS (
    SELECT auth_id, model_id, service_tier, context_tier, event_count, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, audio_input_tokens, audio_output_tokens, image_input_tokens, cost_usd
    FROM rated_usage
    WHERE window_start = %(window_start)s::timestamptz
    UNION ALL
    SELECT
        auth_id, model_id, service_tier, context_tier, event_count,
        CASE WHEN token_class = 'input' THEN quantity_tokens ELSE 0 END,
        CASE WHEN token_class = 'output' THEN quantity_tokens ELSE 0 END,
        CASE WHEN token_class = 'cache_read' THEN quantity_tokens ELSE 0 END,
        CASE WHEN token_class = 'cache_write' THEN quantity_tokens ELSE 0 END,
        CASE WHEN token_class = 'cache_write_1h' THEN quantity_tokens ELSE 0 END,
        CASE WHEN token_class = 'reasoning' THEN quantity_tokens ELSE 0 END,
        CASE WHEN token_class = 'audio_input' THEN quantity_tokens ELSE 0 END,
        CASE WHEN token_class = 'audio_output' THEN quantity_tokens ELSE 0 END,
        CASE WHEN token_class = 'image_input' THEN quantity_tokens ELSE 0 END,
        cost_usd
    FROM rating_adjustment
    WHERE window_start = %(window_start)s::timestamptz
    UNION ALL
    SELECT auth_id, model_id, service_tier, context_tier, -event_count, -input_tokens, -output_tokens, -cache_read_tokens, -cache_write_tokens, -cache_write_1h_tokens, -reasoning_tokens, -audio_input_tokens, -audio_output_tokens, -image_input_tokens, -cost_usd
    FROM window_output
),
unbalanced AS (
    SELECT auth_id, model_id, service_tier, context_tier
    FROM difference
    GROUP BY auth_id, model_id, service_tier, context_tier
    HAVING sum(event_count) <> 0 OR sum(input_tokens) <> 0 OR sum(output_tokens) <> 0
        OR sum(cache_read_tokens) <> 0 OR sum(cache_write_tokens) <> 0
        OR sum(cache_write_1h_tokens) <> 0 OR sum(reasoning_tokens) <> 0
        OR sum(audio_input_tokens) <> 0 OR sum(audio_output_tokens) <> 0
        OR sum(image_input_tokens) <> 0 OR sum(cost_usd) <> 0
)
SELECT count(*) OVER () AS unbalanced, auth_id, model_id, service_tier, context_tier
FROM unbalanced
ORDER BY auth_id COLLATE "C", model_id COLLATE "C", service_tier COLLATE "C",
    context_tier COLLATE "C"
LIMIT 5
