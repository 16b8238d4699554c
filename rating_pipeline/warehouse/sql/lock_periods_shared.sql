-- Ratings, invoice builds and exports hold this shared, a close holds it exclusively
-- (lock_periods_exclusive.sql): the close mark cannot move under a rating that read it.
-- Bound: %(namespace)s, %(key)s.
SELECT pg_advisory_xact_lock_shared(%(namespace)s, %(key)s)
