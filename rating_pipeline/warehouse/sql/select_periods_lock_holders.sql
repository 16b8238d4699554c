-- How many other sessions of this database hold the periods lock (the two-key advisory
-- lock (%(namespace)s, %(key)s): pg_locks shows its keys as classid and objid, objsubid 2,
-- and the locks of every database of the server).
SELECT count(DISTINCT pid)
FROM pg_locks
WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid::bigint = %(namespace)s AND objid::bigint = %(key)s AND objsubid = 2
