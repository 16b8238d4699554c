-- The bases_key of the rollups whose events carry more than one distinct base_model,
-- computed from their valid events (negative-token events are not part of the rollup).
-- Reads the window's events a second time, so the engine runs it only when such rollups
-- exist (count_mixed_bases.sql): fine-tunes with inconsistent bases, which the rules
-- exclude as ambiguous, or models whose rate ignores the base. Canonical form as in
-- create_window_usage.sql. Bound: %(start)s, %(end)s.
UPDATE window_usage AS usage
SET bases_key = mixed.bases_key
FROM (
    SELECT
        event.auth_id,
        event.model_id,
        to_jsonb(
            array_agg(DISTINCT event.base_model COLLATE "C" ORDER BY event.base_model COLLATE "C")
        )::text AS bases_key
    FROM billing_event AS event
    JOIN window_usage AS pending
        ON pending.auth_id = event.auth_id
        AND pending.model_id = event.model_id
        AND pending.problem_bits = 0
        AND pending.bases_key IS NULL
    WHERE event.occurred_at >= %(start)s AND event.occurred_at < %(end)s
      AND event.input_tokens >= 0 AND event.output_tokens >= 0
    GROUP BY event.auth_id, event.model_id
) AS mixed
WHERE usage.problem_bits = 0
  AND usage.auth_id = mixed.auth_id
  AND usage.model_id = mixed.model_id
