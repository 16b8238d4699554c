-- The span of every window ever rated or billed: [first window_start, last window_end) over
-- rating_log and rated_usage (rows written outside the rater too), or NULLs when there is
-- neither. An asset check run outside a partitioned run audits this span. rated_usage is
-- probed through its key's leading window_start, both ends.
SELECT
    least(
        (SELECT min(window_start) FROM rating_log), (SELECT min(window_start) FROM rated_usage)
    ) AS first_start,
    greatest(
        (SELECT max(window_end) FROM rating_log),
        (SELECT max(window_start) FROM rated_usage) + interval '1 hour'
    ) AS last_end
