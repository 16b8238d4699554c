-- The distinct (model_id, bases_key) of the window's rollups (the valid rows of
-- window_usage): one pricing.resolve call each (a handful per window, whatever the number
-- of rollups). A NULL bases_key means rollups whose per-base rows are still to be merged
-- (merge_mixed_bases.sql).
SELECT DISTINCT model_id, bases_key FROM window_usage WHERE problem_bits = 0
