-- The first month that holds invoice lines or a close's record of them (NULL: none), where
-- the closed_months_match_their_close check starts outside a partitioned run.
SELECT least(
    (SELECT min(month) FROM invoice_line),
    (SELECT min(month) FROM rating_period_close_total)
)
