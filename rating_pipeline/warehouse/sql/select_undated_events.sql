-- How many events no window holds: without an occurred_at (only an upstream table that
-- allows null has them), or with one outside [%(windowed_from)s, %(windowed_until)s)
-- (windows.WINDOWED_FROM: before year 1, from 9999-12-31 23:00, infinite). No rating
-- reads, bills or excepts them; `rate` and all_windows_billed count them instead (contract 6:
-- every event billed or explained). Three index-only probes of the occurred_at index (a btree
-- holds nulls).
SELECT
    (SELECT count(*) FROM billing_event WHERE occurred_at IS NULL)
    + (SELECT count(*) FROM billing_event WHERE occurred_at < %(windowed_from)s::timestamptz)
    + (SELECT count(*) FROM billing_event WHERE occurred_at >= %(windowed_until)s::timestamptz)
