-- One window's exceptions, in key order, as records.RatingException fields.
SELECT
    window_start, window_end, auth_id, model_id, reason, detail, event_count,
    input_tokens, output_tokens, pricebook_version
FROM rating_exception
WHERE window_start = %(window_start)s
ORDER BY auth_id COLLATE "C", model_id COLLATE "C", reason COLLATE "C"
