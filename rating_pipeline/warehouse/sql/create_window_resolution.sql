-- pricing.resolve's answer per (model_id, bases_key): rates for Priced (reason NULL),
-- reason and detail for Excluded (rates NULL). model_text and rates_text (Priced only) are
-- the model and the five rate columns as a checksum line renders them
-- (records.canonical_fields), for window_output_checksum.sql. Dropped at commit.
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
    model_text text NULL,
    rates_text text NULL,
    PRIMARY KEY (model_id, bases_key)
) ON COMMIT DROP
