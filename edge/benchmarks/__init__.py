"""Benchmarks of the edge runner itself (scripts, not tests)."""
