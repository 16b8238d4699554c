-- How many statements outside a rating have written rated_usage or rating_exception
-- (migration 0004). Read right after the window's lock: a later edit makes the count that
-- this rating logs stale, which only ever prevents carrying its checksum.
SELECT edits FROM rated_output_edit
