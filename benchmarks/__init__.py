"""Benchmarks of the simulator (not tests; run them by hand, e.g. ``python -m benchmarks.bench_simulator``)."""
