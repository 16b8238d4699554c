-- The totals of ONE window's frozen rated_usage rows plus all its adjustments, stamped and
-- open: in a closed window, what must equal its latest output (contract 10). Bound:
-- %(window_start)s.
WITH billed AS (
    SELECT event_count, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, audio_input_tokens, audio_output_tokens, image_input_tokens, cost_usd
    FROM rated_usage
    WHERE window_start = %(window_start)s::timestamptz
    UNION ALL
    SELECT
        event_count,
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
)
SELECT
    0 AS inserted, 0 AS updated, 0 AS deleted,
    count(*) AS rows,
    coalesce(sum(event_count), 0) AS event_count,
    coalesce(sum(input_tokens), 0) AS input_tokens,
    coalesce(sum(output_tokens), 0) AS output_tokens,
    coalesce(sum(cache_read_tokens), 0) AS cache_read_tokens,
    coalesce(sum(cache_write_tokens), 0) AS cache_write_tokens,
    coalesce(sum(cache_write_1h_tokens), 0) AS cache_write_1h_tokens,
    coalesce(sum(reasoning_tokens), 0) AS reasoning_tokens,
    coalesce(sum(audio_input_tokens), 0) AS audio_input_tokens,
    coalesce(sum(audio_output_tokens), 0) AS audio_output_tokens,
    coalesce(sum(image_input_tokens), 0) AS image_input_tokens,
    coalesce(sum(cost_usd), 0) AS cost_usd
FROM billed
