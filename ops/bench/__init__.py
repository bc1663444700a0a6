"""Benchmarks, run from the repository root as `python -m ops.bench.NAME`; each prints JSON."""
