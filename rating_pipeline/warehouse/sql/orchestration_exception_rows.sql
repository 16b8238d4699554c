-- The first %(limit)s rating_exception rows of [%(start)s, %(end)s) whose reason is one of
-- %(reasons)s, most events first: the rollups a billing engineer has to look at.
SELECT window_start, auth_id, model_id, service_tier, context_tier, reason, detail, event_count
FROM rating_exception
WHERE window_start >= %(start)s AND window_start < %(end)s
  AND reason = ANY(%(reasons)s)
ORDER BY event_count DESC, window_start, auth_id COLLATE "C", model_id COLLATE "C",
    service_tier COLLATE "C", context_tier COLLATE "C", reason COLLATE "C"
LIMIT %(limit)s
