-- The distinct (model_id, bases_key) of the window's rollups, once merged: the keys
-- pricing.resolve answers for, a handful per window whatever the number of rollups.
SELECT model_id, bases_key
FROM window_sums
WHERE problem_bits = 0
GROUP BY model_id, bases_key
