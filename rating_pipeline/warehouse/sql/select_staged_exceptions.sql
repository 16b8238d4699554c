-- Every staged exception (they are few), in key order (code point).
SELECT
    window_start, window_end, auth_id, model_id, reason, detail, event_count,
    input_tokens, output_tokens, pricebook_version
FROM staged_rating_exception
ORDER BY auth_id COLLATE "C", model_id COLLATE "C", reason COLLATE "C"
