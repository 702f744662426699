"""Benchmarks: accuracy, time and memory figures written to ``bench/results`` (not timed tests)."""
