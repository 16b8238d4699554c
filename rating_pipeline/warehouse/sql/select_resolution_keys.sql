-- The distinct (model_id, bases_key) of the window's rollups (the valid rows of
-- window_usage): one pricing.resolve call each (a handful per window, whatever the number
-- of rollups).
SELECT DISTINCT model_id, bases_key FROM window_usage WHERE problem_bits = 0
