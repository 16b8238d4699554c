-- The rules' answer for every (model_id, bases_key) of the window and every service and
-- context tier: the rate set that prices it (reason NULL; a class without a rate is NULL),
-- with rates_label naming the set for a missing-class detail; or the reason and detail
-- why it cannot bill. No key: a few rows, hash-joined, and valid ids (256 characters) with
-- several bases can exceed what a B-tree entry holds. Dropped at commit.
CREATE TEMP TABLE window_resolution (
    model_id text NOT NULL,
    bases_key text NOT NULL,
    service_tier text NOT NULL,
    context_tier text NOT NULL,
    rate_source text NULL,
    derivation_base text NULL,
    multiplier numeric NULL,
    input_rate_per_mtok numeric(24, 6) NULL,
    output_rate_per_mtok numeric(24, 6) NULL,
    cache_read_rate_per_mtok numeric(24, 6) NULL,
    cache_write_rate_per_mtok numeric(24, 6) NULL,
    cache_write_1h_rate_per_mtok numeric(24, 6) NULL,
    reasoning_rate_per_mtok numeric(24, 6) NULL,
    audio_input_rate_per_mtok numeric(24, 6) NULL,
    audio_output_rate_per_mtok numeric(24, 6) NULL,
    image_input_rate_per_mtok numeric(24, 6) NULL,
    rates_label text NULL,
    reason text NULL,
    detail text NULL
) ON COMMIT DROP
