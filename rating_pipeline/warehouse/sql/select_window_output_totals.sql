-- The totals of ONE window's latest output (window_output, from price_window.sql): what a
-- closed window should bill, as the reconcile statements return for an open one.
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
FROM window_output
