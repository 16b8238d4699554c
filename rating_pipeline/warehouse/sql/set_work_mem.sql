-- The rating transaction's work_mem (SET LOCAL: it ends with the transaction), so that a
-- busy window's groups hash in memory. Bound: %(work_mem)s (engine.RATING_WORK_MEM).
SELECT set_config('work_mem', %(work_mem)s, true)
