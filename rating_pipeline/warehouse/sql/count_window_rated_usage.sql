-- How many rated_usage rows ONE window holds (a closed window's frozen rows).
-- Bound: %(window_start)s.
SELECT count(*) FROM rated_usage WHERE window_start = %(window_start)s::timestamptz
