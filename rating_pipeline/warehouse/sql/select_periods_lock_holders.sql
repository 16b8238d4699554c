-- How many other sessions hold the periods lock (the two-key advisory lock
-- (%(namespace)s, %(key)s): pg_locks shows its keys as classid and objid, objsubid 2).
SELECT count(DISTINCT pid)
FROM pg_locks
WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
  AND classid::bigint = %(namespace)s AND objid::bigint = %(key)s AND objsubid = 2
