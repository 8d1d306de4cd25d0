"""Lookalike desktop app (PySide6): views, Qt item models and thin workers over ``engine``.

Everything heavy (decoding, inference, search, import) is done by :mod:`engine` on worker
threads; modules here must not import the heavy engine modules at import time, so that the
window shows quickly (they are imported lazily inside workers).
"""
