-- The rating transaction's work_mem (SET LOCAL: it ends with the transaction). At the
-- default 4MB the window's ~50k groups spill the hash aggregate and the checksum's sort
-- to disk. Bound: %(work_mem)s (engine.RATING_WORK_MEM).
SELECT set_config('work_mem', %(work_mem)s, true)
