-- The rows of window_usage grouped by resolution key: (model_id, bases_key, is_rollup).
-- The rollup groups (problem_bits = 0) are the distinct keys the rules answer for, one
-- pricing.resolve call each (a handful per window, whatever the number of rollups); a NULL
-- bases_key among them means rollups whose per-base rows are still to be merged
-- (merge_mixed_bases.sql). Every group also carries two sums of per-row hashes, the
-- window's input fingerprint (fingerprint.py): each row rendered injectively (text
-- length-prefixed: a NULL renders ":" alone, an empty text "0:"), hashed with
-- seeds 1 and 2. The OFFSET 0 keeps the rendering in the subquery, done once per row.
SELECT
    model_id,
    bases_key,
    is_rollup,
    count(*) AS row_count,
    sum(hashtextextended(line, 1)) AS digest_1,
    sum(hashtextextended(line, 2)) AS digest_2
FROM (
    SELECT
        model_id,
        bases_key,
        problem_bits = 0 AS is_rollup,
        concat(
            octet_length(auth_id), ':', auth_id, ' ',
            octet_length(model_id), ':', model_id, ' ',
            octet_length(base_model), ':', base_model, ' ',
            octet_length(bases_key), ':', bases_key, ' ',
            problem_bits, ' ', event_count, ' ', input_tokens, ' ', output_tokens
        ) AS line
    FROM window_usage
    OFFSET 0
) AS usage
GROUP BY model_id, bases_key, is_rollup
