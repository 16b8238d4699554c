-- Per account, ONE month's invoice as its lines stand: the line count, the exact sum, the
-- invoice total (the sum of the rounded lines) and a sha256 of every line's key and
-- amounts in key order, which a close records and the closed-month check compares.
-- Bound: %(month)s.
SELECT
    account_id,
    count(*) AS line_count,
    sum(amount_exact) AS amount_exact,
    sum(amount) AS amount,
    encode(sha256(convert_to(string_agg(
        concat_ws('|', kind, model_id, service_tier, context_tier, token_class,
            unit_rate_per_mtok, quantity_tokens, amount_exact, amount),
        E'\n' ORDER BY kind COLLATE "C", model_id COLLATE "C", service_tier COLLATE "C",
            context_tier COLLATE "C", token_class COLLATE "C", unit_rate_per_mtok
    ), 'UTF8')), 'hex') AS lines_sha256
FROM invoice_line
WHERE month = %(month)s::timestamptz
GROUP BY account_id
ORDER BY account_id COLLATE "C"
