-- Serialize ratings of one window: held until the transaction ends (commit, rollback or
-- a dead backend). Bound: %(namespace)s (the project's key space), %(window_hour)s.
SELECT pg_advisory_xact_lock(%(namespace)s, %(window_hour)s)
