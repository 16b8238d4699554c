-- Rows arrive in binary through psycopg's COPY (reconcile.stage sets the column types).
COPY staged_rating_exception (
    window_start, window_end, auth_id, model_id, reason, detail, event_count,
    input_tokens, output_tokens, pricebook_version
) FROM STDIN (FORMAT BINARY)
