-- The temp table one rating sums its window's events into (fill_window_sums.sql), one row
-- per (auth_id, model_id, base_model, service_tier, context_tier, problem_bits); dropped
-- when the transaction ends.
CREATE TEMP TABLE window_sums (
    auth_id text NOT NULL,
    model_id text NOT NULL,
    base_model text,
    service_tier text,
    context_tier text NOT NULL,
    problem_bits bigint NOT NULL,
    bases_key text,
    event_count bigint NOT NULL,
    input_tokens numeric NOT NULL,
    output_tokens numeric NOT NULL,
    cache_read_tokens numeric NOT NULL,
    cache_write_tokens numeric NOT NULL,
    cache_write_1h_tokens numeric NOT NULL,
    reasoning_tokens numeric NOT NULL,
    audio_input_tokens numeric NOT NULL,
    audio_output_tokens numeric NOT NULL,
    image_input_tokens numeric NOT NULL,
    max_ingested_at timestamptz  -- null when upstream left every ingested_at null
) ON COMMIT DROP
