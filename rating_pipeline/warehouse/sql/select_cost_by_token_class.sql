-- Billed tokens and exact cost per token class of the rated_usage rows of
-- [%(start)s, %(end)s), in TOKEN_CLASSES order, classes without tokens left out. A class's
-- cost is the sum of its tokens x its frozen rate x 0.000001: the very terms each row's
-- cost_usd adds up, so the classes' costs add up exactly to the rows' sum(cost_usd).
SELECT class.token_class, sum(class.tokens) AS tokens,
       coalesce(sum(class.tokens * class.rate_per_mtok), 0) * 0.000001 AS cost_usd
FROM rated_usage AS r
CROSS JOIN LATERAL (VALUES
    (1, 'input', r.input_tokens, r.input_rate_per_mtok),
    (2, 'output', r.output_tokens, r.output_rate_per_mtok),
    (3, 'cache_read', r.cache_read_tokens, r.cache_read_rate_per_mtok),
    (4, 'cache_write', r.cache_write_tokens, r.cache_write_rate_per_mtok),
    (5, 'cache_write_1h', r.cache_write_1h_tokens, r.cache_write_1h_rate_per_mtok),
    (6, 'reasoning', r.reasoning_tokens, r.reasoning_rate_per_mtok),
    (7, 'audio_input', r.audio_input_tokens, r.audio_input_rate_per_mtok),
    (8, 'audio_output', r.audio_output_tokens, r.audio_output_rate_per_mtok),
    (9, 'image_input', r.image_input_tokens, r.image_input_rate_per_mtok)
) AS class (position, token_class, tokens, rate_per_mtok)
WHERE r.window_start >= %(start)s AND r.window_start < %(end)s
GROUP BY class.position, class.token_class
HAVING sum(class.tokens) <> 0
ORDER BY class.position
