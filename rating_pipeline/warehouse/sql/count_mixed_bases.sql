-- How many rows of window_usage belong to rollups whose events carry more than one
-- base_model (bases_key left NULL by create_window_usage.sql).
SELECT count(*) FROM window_usage WHERE problem_bits = 0 AND bases_key IS NULL
