-- The rollups one rating deleted from one window (for the INFO log): its run and its
-- instant, since a run id may rate the same window twice.
SELECT auth_id, model_id, service_tier, context_tier
FROM rated_usage_archive
WHERE window_start = %(window_start)s AND superseded_by_run_id = %(run_id)s
  AND superseded_at = %(rated_at)s AND change = 'deleted'
ORDER BY auth_id COLLATE "C", model_id COLLATE "C", service_tier COLLATE "C",
    context_tier COLLATE "C"
