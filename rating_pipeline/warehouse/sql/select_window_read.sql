-- What one rating read of its window, from window_sums as fill_window_sums.sql left it:
-- the events digest (row and event counts, and the exact sum of one 64-bit hash of each
-- row, ingested_at aside; the record hash is linear in its fields, so it is hashed again,
-- or values swapped between rows would leave the sum as it was), the totals every output
-- must account for, and the latest ingested_at.
SELECT
    concat_ws(
        ':', count(*), coalesce(sum(event_count), 0),
        coalesce(sum(hashint8extended(hash_record_extended(
            (auth_id, model_id, base_model, service_tier, context_tier, problem_bits,
                event_count, input_tokens, output_tokens, cache_read_tokens,
                cache_write_tokens, cache_write_1h_tokens, reasoning_tokens,
                audio_input_tokens, audio_output_tokens, image_input_tokens),
            0
        ), 0)), 0)
    ) AS events_digest,
    coalesce(sum(event_count), 0) AS event_count,
    coalesce(sum(input_tokens), 0) AS input_tokens,
    coalesce(sum(output_tokens), 0) AS output_tokens,
    coalesce(sum(cache_read_tokens), 0) AS cache_read_tokens,
    coalesce(sum(cache_write_tokens), 0) AS cache_write_tokens,
    coalesce(sum(cache_write_1h_tokens), 0) AS cache_write_1h_tokens,
    coalesce(sum(reasoning_tokens), 0) AS reasoning_tokens,
    coalesce(sum(audio_input_tokens), 0) AS audio_input_tokens,
    coalesce(sum(audio_output_tokens), 0) AS audio_output_tokens,
    coalesce(sum(image_input_tokens), 0) AS image_input_tokens,
    max(max_ingested_at) AS max_ingested_at
FROM window_sums
