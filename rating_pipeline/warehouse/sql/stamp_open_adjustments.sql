-- A close stamps every open adjustment with its id: from then on it is billed output,
-- frozen like the rows it corrects. Bound: %(close_id)s.
UPDATE rating_adjustment SET invoiced_by = %(close_id)s WHERE invoiced_by IS NULL
