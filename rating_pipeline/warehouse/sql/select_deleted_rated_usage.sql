-- The rollups one run deleted from one window (for the INFO log).
SELECT auth_id, model_id, event_count, cost_usd
FROM rated_usage_archive
WHERE window_start = %(window_start)s AND superseded_by_run_id = %(run_id)s AND change = 'deleted'
ORDER BY auth_id COLLATE "C", model_id COLLATE "C"
