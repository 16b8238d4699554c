-- How many rollups of window_usage carry more than one distinct base_model among their
-- events (bases_key left NULL by create_window_usage.sql).
SELECT count(*) FROM window_usage WHERE problem_bits = 0 AND bases_key IS NULL
