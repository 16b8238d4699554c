-- The windows of [%(start)s, %(through)s) that late_window records changed after their
-- latest rating (late_window, against that rating's rating_log row) and that no rating has
-- read since, oldest first: a close through %(through)s freezes them with that rating's rows.
SELECT late.window_start
FROM late_window AS late
WHERE late.window_start >= %(start)s AND late.window_start < %(through)s
  AND late.log_id = (
      SELECT max(log_id) FROM rating_log WHERE rating_log.window_start = late.window_start
  )
ORDER BY late.window_start
