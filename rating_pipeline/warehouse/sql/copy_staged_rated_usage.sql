-- Rows arrive in binary through psycopg's COPY (reconcile.stage sets the column types).
COPY staged_rated_usage (
    window_start, window_end, auth_id, model_id, event_count, input_tokens, output_tokens,
    rate_source, derivation_base, multiplier, input_rate_per_mtok, output_rate_per_mtok,
    cost_usd, pricebook_version, pricebook_sha256
) FROM STDIN (FORMAT BINARY)
