-- A close's first try for the periods lock, exclusive: true when no rating, build, export
-- or dry run holds it (lock_periods_exclusive.sql then waits for none). Bound: %(namespace)s, %(key)s.
SELECT pg_try_advisory_xact_lock(%(namespace)s, %(key)s)
