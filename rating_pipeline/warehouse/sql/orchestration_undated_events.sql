-- How many events no window holds: without an occurred_at (only an upstream table that
-- allows null has them), or with one outside [%(windowed_from)s, %(windowed_until)s)
-- (windows.WINDOWED_FROM: before year 1, after 9999, infinite). No rating reads, bills or
-- excepts them; all_windows_billed names them instead (contract 6: every event billed or
-- explained). Three probes of the occurred_at index (a btree holds nulls).
SELECT count(*)
FROM billing_event
WHERE occurred_at IS NULL
   OR occurred_at < %(windowed_from)s::timestamptz
   OR occurred_at >= %(windowed_until)s::timestamptz
