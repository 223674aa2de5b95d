"""Benchmarks (see README.md): scripts run as `python bench/<name>.py`; `bench.services` is what they share."""
