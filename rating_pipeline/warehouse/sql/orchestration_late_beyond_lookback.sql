-- The late-events sensor's report: windows that started before %(lookback_start)s and
-- received events ingested after %(since)s. They are not re-rated automatically.
SELECT date_trunc('hour', occurred_at, 'UTC') AS window_start, count(*) AS event_count
FROM billing_event
WHERE ingested_at > %(since)s AND occurred_at < %(lookback_start)s
GROUP BY 1
ORDER BY 1
