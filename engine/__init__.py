"""Lookalike engine: everything that is not GUI. Never imports Qt (see tests/test_architecture.py)."""

__version__ = "0.1.0"
