"""Checks of the Qt binding the app runs on."""

from __future__ import annotations

import sys


def none_refcount_defect() -> str | None:
    """A message if the installed PySide6 drops a reference to ``None`` on every call of a
    method that returns nothing (PySide6 6.12.0 does so under Python < 3.12, where ``None`` is
    not immortal): the process then aborts with "deallocating None" after a few thousand calls.
    ``None`` if the binding is sound."""
    if sys.version_info >= (3, 12):
        return None
    import PySide6
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(64):
        probe.setObjectName("probe")  # a void method
    lost = before - sys.getrefcount(None)
    if lost < 32:
        return None
    return (
        f"PySide6 {PySide6.__version__} has a reference-counting defect under Python "
        f"{sys.version_info.major}.{sys.version_info.minor} that makes the app abort after a while: "
        "install PySide6 6.11 (pip install 'pyside6-essentials<6.12') or use Python 3.12 or newer."
    )
