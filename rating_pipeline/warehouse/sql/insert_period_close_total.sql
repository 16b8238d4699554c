-- What a close records of one month it wholly closes, per account. Bound: %(close_id)s,
-- %(month)s, %(account_id)s, %(line_count)s, %(amount_exact)s, %(amount)s,
-- %(lines_sha256)s.
INSERT INTO rating_period_close_total (
    close_id, month, account_id, line_count, amount_exact, amount, lines_sha256
) VALUES (
    %(close_id)s, %(month)s, %(account_id)s, %(line_count)s, %(amount_exact)s, %(amount)s,
    %(lines_sha256)s
)
