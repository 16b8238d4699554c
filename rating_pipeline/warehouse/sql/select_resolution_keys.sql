-- The distinct (model_id, bases_key) of the window's rollups (the valid rows of
-- window_usage, once merge_mixed_bases.sql has run): the keys the rules answer for, one
-- pricing.resolve call each (a handful per window, whatever the number of rollups).
SELECT model_id, bases_key
FROM window_usage
WHERE problem_bits = 0
GROUP BY model_id, bases_key
