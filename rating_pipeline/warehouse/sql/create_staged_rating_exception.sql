-- The run's exceptions for one window, before reconciliation. Dropped at commit.
CREATE TEMP TABLE staged_rating_exception (
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    auth_id text NOT NULL,
    model_id text NOT NULL,
    reason text NOT NULL,
    detail text NOT NULL,
    event_count bigint NOT NULL,
    input_tokens numeric(30, 0) NOT NULL,
    output_tokens numeric(30, 0) NOT NULL,
    pricebook_version text NOT NULL,
    PRIMARY KEY (window_start, auth_id, model_id, reason)
) ON COMMIT DROP
