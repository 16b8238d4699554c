-- Temp tables have no statistics until analyzed; give the planner true row counts.
ANALYZE staged_rated_usage, staged_rating_exception
