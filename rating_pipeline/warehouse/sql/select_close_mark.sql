-- The close mark: every window that starts before it is closed (NULL: none is).
SELECT max(closed_through) AS closed_through FROM rating_period_close
