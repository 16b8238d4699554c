-- The first %(limit)s rated_usage rows of [%(start)s, %(end)s) whose cost does not
-- reconstruct from their own frozen rates and tokens, with the cost they should carry.
SELECT
    window_start,
    auth_id,
    model_id,
    cost_usd,
    (input_tokens * input_rate_per_mtok + output_tokens * output_rate_per_mtok)
        * 0.000001 AS reconstructed_cost_usd
FROM rated_usage
WHERE window_start >= %(start)s AND window_start < %(end)s
  AND cost_usd * 1000000
      <> input_tokens * input_rate_per_mtok + output_tokens * output_rate_per_mtok
ORDER BY window_start, auth_id, model_id
LIMIT %(limit)s
