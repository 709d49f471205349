"""Benchmark scripts: speed and accuracy targets written as JSON + Markdown (not tests)."""
