-- Binary COPY into window_resolution; engine.RESOLUTION_TYPES gives the column types.
COPY window_resolution (
    model_id, bases_key, rate_source, derivation_base, multiplier, input_rate_per_mtok,
    output_rate_per_mtok, reason, detail
) FROM STDIN (FORMAT BINARY)
