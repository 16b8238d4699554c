-- pricing.resolve's answer per (model_id, bases_key) of the window: the rates for a priced
-- key (reason NULL), the reason and detail for an excluded one. Dropped at commit.
CREATE TEMP TABLE window_resolution (
    model_id text NOT NULL,
    bases_key text NOT NULL,
    rate_source text NULL,
    derivation_base text NULL,
    multiplier numeric NULL,
    input_rate_per_mtok numeric(24, 6) NULL,
    output_rate_per_mtok numeric(24, 6) NULL,
    reason text NULL,
    detail text NULL,
    PRIMARY KEY (model_id, bases_key)
) ON COMMIT DROP
