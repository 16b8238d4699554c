-- Billed tokens and exact cost per token class of the rated_usage rows of
-- [%(start)s, %(end)s), in TOKEN_CLASSES order, classes without tokens left out. A class's
-- cost is the sum of its tokens x its frozen rate x 0.000001: the very terms each row's
-- cost_usd adds up, so the classes' costs add up exactly to the rows' sum(cost_usd).
WITH total AS (
    SELECT
        sum(input_tokens) AS input, sum(input_tokens * input_rate_per_mtok) AS input_cost,
        sum(output_tokens) AS output, sum(output_tokens * output_rate_per_mtok) AS output_cost,
        sum(cache_read_tokens) AS cache_read,
        sum(cache_read_tokens * cache_read_rate_per_mtok) AS cache_read_cost,
        sum(cache_write_tokens) AS cache_write,
        sum(cache_write_tokens * cache_write_rate_per_mtok) AS cache_write_cost,
        sum(cache_write_1h_tokens) AS cache_write_1h,
        sum(cache_write_1h_tokens * cache_write_1h_rate_per_mtok) AS cache_write_1h_cost,
        sum(reasoning_tokens) AS reasoning,
        sum(reasoning_tokens * reasoning_rate_per_mtok) AS reasoning_cost,
        sum(audio_input_tokens) AS audio_input,
        sum(audio_input_tokens * audio_input_rate_per_mtok) AS audio_input_cost,
        sum(audio_output_tokens) AS audio_output,
        sum(audio_output_tokens * audio_output_rate_per_mtok) AS audio_output_cost,
        sum(image_input_tokens) AS image_input,
        sum(image_input_tokens * image_input_rate_per_mtok) AS image_input_cost
    FROM rated_usage
    WHERE window_start >= %(start)s AND window_start < %(end)s
)
SELECT class.token_class, class.tokens, coalesce(class.cost, 0) * 0.000001 AS cost_usd
FROM total
CROSS JOIN LATERAL (VALUES
    (1, 'input', total.input, total.input_cost),
    (2, 'output', total.output, total.output_cost),
    (3, 'cache_read', total.cache_read, total.cache_read_cost),
    (4, 'cache_write', total.cache_write, total.cache_write_cost),
    (5, 'cache_write_1h', total.cache_write_1h, total.cache_write_1h_cost),
    (6, 'reasoning', total.reasoning, total.reasoning_cost),
    (7, 'audio_input', total.audio_input, total.audio_input_cost),
    (8, 'audio_output', total.audio_output, total.audio_output_cost),
    (9, 'image_input', total.image_input, total.image_input_cost)
) AS class (position, token_class, tokens, cost)
WHERE class.tokens <> 0
ORDER BY class.position
