-- The span of every window ever rated: [first window_start, last window_end), or NULLs
-- when nothing was rated. An asset check run outside a partitioned run audits this span.
SELECT min(window_start) AS first_start, max(window_end) AS last_end
FROM rating_log
