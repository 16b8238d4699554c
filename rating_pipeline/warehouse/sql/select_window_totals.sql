-- Conservation and the log's totals in one row: what window_usage read, what the staged
-- rollups and exceptions account for, the rollup count and the total cost.
SELECT
    read.event_count, read.input_tokens, read.output_tokens, read.max_ingested_at,
    rated.event_count, rated.input_tokens, rated.output_tokens, rated.rollup_count,
    rated.cost_usd,
    excepted.event_count, excepted.input_tokens, excepted.output_tokens
FROM (
    SELECT
        coalesce(sum(event_count), 0) AS event_count,
        coalesce(sum(input_tokens), 0) AS input_tokens,
        coalesce(sum(output_tokens), 0) AS output_tokens,
        max(max_ingested_at) AS max_ingested_at
    FROM window_usage
) AS read,
(
    SELECT
        coalesce(sum(event_count), 0) AS event_count,
        coalesce(sum(input_tokens), 0) AS input_tokens,
        coalesce(sum(output_tokens), 0) AS output_tokens,
        count(*) AS rollup_count,
        coalesce(sum(cost_usd), 0) AS cost_usd
    FROM staged_rated_usage
) AS rated,
(
    SELECT
        coalesce(sum(event_count), 0) AS event_count,
        coalesce(sum(input_tokens), 0) AS input_tokens,
        coalesce(sum(output_tokens), 0) AS output_tokens
    FROM staged_rating_exception
) AS excepted
