"""Benchmarks: measurements of haltwatch on generated data with known ground truth (not shipped)."""
