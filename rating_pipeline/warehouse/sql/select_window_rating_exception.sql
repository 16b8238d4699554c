-- One window's exceptions, in key order (code point), as records.RatingException fields.
SELECT
    window_start, window_end, auth_id, model_id, service_tier, context_tier, reason, detail,
    event_count, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    cache_write_1h_tokens, reasoning_tokens, audio_input_tokens, audio_output_tokens,
    image_input_tokens, pricebook_version
FROM rating_exception
WHERE window_start = %(window_start)s
ORDER BY auth_id COLLATE "C", model_id COLLATE "C", service_tier COLLATE "C",
    context_tier COLLATE "C", reason COLLATE "C"
