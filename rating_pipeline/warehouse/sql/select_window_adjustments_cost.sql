-- The exact cost difference of every rating_adjustment row of the window at
-- %(window_start)s, stamped and open (0 in an open window, which has none): what a closed
-- window's cost adds to its frozen rows.
SELECT coalesce(sum(cost_usd), 0)
FROM rating_adjustment
WHERE window_start = %(window_start)s
