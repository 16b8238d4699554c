-- Mark the transaction as a rating (SET LOCAL: it ends with the transaction), so that the
-- triggers of migration 0004 do not count its writes to the outputs as edits.
SELECT set_config('rating_pipeline.rating', 'on', true)
