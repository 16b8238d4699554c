-- The rows of the temp table window_usage (fill_window_usage, then merge_mixed_bases),
-- invalid usage summed per (auth_id, model_id, problem_bits) whatever its base_model, to
-- look at it from Python (extract.extract_window_usage; the rating never fetches them).
SELECT
    auth_id, model_id, problem_bits, bases_key, sum(event_count), sum(input_tokens),
    sum(output_tokens), max(max_ingested_at)
FROM window_usage
GROUP BY auth_id, model_id, problem_bits, bases_key
