-- Record one close, append-only (contract 10). Bound: %(closed_through)s, %(closed_by)s,
-- %(note)s.
INSERT INTO rating_period_close (closed_through, closed_at, closed_by, note)
VALUES (%(closed_through)s, clock_timestamp(), %(closed_by)s, %(note)s)
RETURNING close_id, closed_at
