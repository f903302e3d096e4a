"""Benchmarks, apart from the tests: ``make bench`` or ``python -m bench [suite] [options]``."""
