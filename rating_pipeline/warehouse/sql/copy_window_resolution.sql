-- Rows arrive in binary through psycopg's COPY (engine.RESOLUTION_TYPES sets the types).
COPY window_resolution (
    model_id, bases_key, rate_source, derivation_base, multiplier, input_rate_per_mtok,
    output_rate_per_mtok, reason, detail, model_text, rates_text
) FROM STDIN (FORMAT BINARY)
