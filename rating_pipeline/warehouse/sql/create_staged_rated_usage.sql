-- The run's rollups for one window, before reconciliation. Dropped at commit.
CREATE TEMP TABLE staged_rated_usage (
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    auth_id text NOT NULL,
    model_id text NOT NULL,
    event_count bigint NOT NULL,
    input_tokens numeric(30, 0) NOT NULL,
    output_tokens numeric(30, 0) NOT NULL,
    rate_source text NOT NULL,
    derivation_base text NULL,
    multiplier numeric NULL,
    input_rate_per_mtok numeric(24, 6) NOT NULL,
    output_rate_per_mtok numeric(24, 6) NOT NULL,
    cost_usd numeric(50, 12) NOT NULL,
    pricebook_version text NOT NULL,
    pricebook_sha256 text NOT NULL,
    PRIMARY KEY (window_start, auth_id, model_id)
) ON COMMIT DROP
