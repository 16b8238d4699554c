-- The rating transaction's planner settings, ending with it (set_config's is_local):
-- work_mem, so that a busy window's groups hash in memory, and no sort where a hash does
-- the job. The planner can expect many times the groups a window has (its estimate for
-- grouping expressions) and would then sort every event to group them instead. Rows a
-- parallel worker passes to the leader cost nothing: at the default cost the planner
-- refuses to share a busy window's per-event work with a worker, which measured faster.
-- Bound: %(work_mem)s (engine.RATING_WORK_MEM).
SELECT set_config('work_mem', %(work_mem)s, true), set_config('enable_sort', 'off', true),
    set_config('parallel_tuple_cost', '0', true)
