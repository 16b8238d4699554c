-- The rating transaction's planner settings, ending with it (set_config's is_local):
-- work_mem, so that a busy window's groups hash in memory, and no sort where a hash does
-- the job. The planner can expect many times the groups a window has (its estimate for
-- grouping expressions) and would then sort every event to group them instead.
-- At least one parallel worker, its rows passed to the leader at no cost: the worker takes
-- part of each event's scan, checks and classification off the leader, which aggregates;
-- the default cost per passed row has the planner refuse that plan for a busy window.
-- Bound: %(work_mem)s (engine.RATING_WORK_MEM).
SELECT set_config('work_mem', %(work_mem)s, true), set_config('enable_sort', 'off', true),
    set_config(
        'max_parallel_workers_per_gather',
        greatest(current_setting('max_parallel_workers_per_gather')::integer, 1)::text,
        true
    ),
    set_config('parallel_tuple_cost', '0', true)
