-- How many events carry no occurred_at (only an upstream table that allows null has them):
-- they belong to no window, so no rating reads, bills or excepts them; all_windows_billed
-- names them instead (contract 6: every event billed or explained). A btree holds nulls:
-- one probe of the occurred_at index. Bound: none.
SELECT count(*) FROM billing_event WHERE occurred_at IS NULL
