"""Helpers shared by the tests and benchmarks: synthesized and recorded telephone-band speech."""
