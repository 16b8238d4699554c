-- Events dated in an hour that has not begun (from %(not_begun)s, the current hour's end,
-- up to %(windowed_until)s): a client's clock ahead. No rating reads them until their hour,
-- after every close before it; all_windows_billed names them. An index range scan, empty
-- in the common case. Returns how many, and the first one's occurred_at.
SELECT count(*), min(occurred_at)
FROM billing_event
WHERE occurred_at >= %(not_begun)s::timestamptz
  AND occurred_at < %(windowed_until)s::timestamptz
