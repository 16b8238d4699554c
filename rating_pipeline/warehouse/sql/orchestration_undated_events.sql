-- The events no partition rates. undated: without an occurred_at (only an upstream table
-- that allows null has them), or with one outside [%(windowed_from)s, %(windowed_until)s)
-- (windows.WINDOWED_FROM: before year 1, after 9999, infinite), which no window holds.
-- before_first_window: from %(windowed_from)s to the first window, %(first_window)s, which
-- no pricebook prices (contract 4.7). No rating reads, bills or excepts either;
-- all_windows_billed names them instead (contract 6: every event billed or explained).
-- Three probes of the occurred_at index (a btree holds nulls).
SELECT
    count(*) FILTER (
        WHERE occurred_at IS NULL
           OR occurred_at < %(windowed_from)s::timestamptz
           OR occurred_at >= %(windowed_until)s::timestamptz
    ) AS undated,
    count(*) FILTER (WHERE occurred_at >= %(windowed_from)s::timestamptz) AS before_first_window
FROM billing_event
WHERE occurred_at IS NULL
   OR occurred_at < %(first_window)s::timestamptz
   OR occurred_at >= %(windowed_until)s::timestamptz
