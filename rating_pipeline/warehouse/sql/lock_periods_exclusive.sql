-- A close waits for every rating and invoice build in flight, and holds later ones until
-- it commits (lock_periods_shared.sql). Bound: %(namespace)s, %(key)s.
SELECT pg_advisory_xact_lock(%(namespace)s, %(key)s)
