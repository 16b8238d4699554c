-- What the closes recorded of the months of [%(start)s, %(end)s), per month and account
-- (rating_period_close_total): what a wholly closed month's lines must still be.
SELECT month, account_id, close_id, line_count, amount_exact, amount, lines_sha256
FROM rating_period_close_total
WHERE month >= %(start)s::timestamptz AND month < %(end)s::timestamptz
ORDER BY month, account_id COLLATE "C"
