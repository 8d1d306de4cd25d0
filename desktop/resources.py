"""Find the bundled assets (SVG icons) and turn them into Qt icons."""

from __future__ import annotations

import functools
from pathlib import Path

from PySide6.QtGui import QIcon, QPixmap


@functools.cache
def assets_dir() -> Path:
    """The ``assets/`` folder: next to the package in a checkout, or installed as package data."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "assets", here / "assets"):
        if (candidate / "lookalike.svg").is_file():
            return candidate
    try:  # installed wheel: assets/ shipped as the ``lookalike_assets`` data package
        from importlib.resources import files

        installed = Path(str(files("lookalike_assets")))
        if (installed / "lookalike.svg").is_file():
            return installed
    except (ImportError, TypeError):
        pass
    raise FileNotFoundError(f"the assets folder is missing (looked next to {here})")


def asset_path(name: str) -> Path:
    """Path of an asset, e.g. ``asset_path("icons/open.svg")``."""
    return assets_dir() / name


@functools.cache
def icon(name: str) -> QIcon:
    """The icon ``assets/icons/<name>.svg`` (an empty icon if it is missing: never fatal)."""
    try:
        path = asset_path(f"icons/{name}.svg")
    except FileNotFoundError:
        return QIcon()
    return QIcon(str(path)) if path.is_file() else QIcon()


@functools.cache
def app_icon() -> QIcon:
    try:
        return QIcon(str(asset_path("lookalike.svg")))
    except FileNotFoundError:
        return QIcon()


def pixmap(name: str, size: int) -> QPixmap:
    """An icon rendered at ``size`` x ``size`` pixels."""
    return icon(name).pixmap(size, size)
