"""Experiments: measured cost, the scaling sweep and search, benchmarks."""
