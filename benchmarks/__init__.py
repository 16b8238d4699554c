"""Benchmarks of rating against its floor, the naive baseline and Dagster (issue 5).

Run ``python -m benchmarks`` (``./dev bench``); see benchmarks/README.md.
"""
