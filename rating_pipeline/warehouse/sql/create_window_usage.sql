-- The temp table one rating sums its window's events into (fill_window_usage.sql), dropped
-- at the commit or rollback of the rating's transaction. One row per
-- (auth_id, model_id, base_model, problem_bits); see fill_window_usage.sql.
CREATE TEMP TABLE window_usage (
    auth_id text NOT NULL,
    model_id text NOT NULL,
    base_model text,
    problem_bits integer NOT NULL,
    bases_key text,
    event_count bigint NOT NULL,
    input_tokens numeric NOT NULL,
    output_tokens numeric NOT NULL,
    max_ingested_at timestamptz NOT NULL
) ON COMMIT DROP
