-- Every row of the temp table window_usage (create_window_usage), to look at it from Python
-- (extract.extract_window_usage; the rating itself never fetches these rows).
SELECT
    auth_id, model_id, problem_bits, bases_key, event_count, input_tokens, output_tokens,
    max_ingested_at
FROM window_usage
